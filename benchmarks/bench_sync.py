"""Outbox drain rate and publish->PUBACK latency, loopback and at 20 ms RTT.

    .venv/bin/python benchmarks/bench_sync.py [--quick]

Drain: N events already in a real EntryLog (SQLite, synchronous=FULL) are published
QoS 1 by SyncService and deleted on PUBACK; the rate includes all outbox bookkeeping.
Latency: one message at a time on a Link, publish() to its PUBACK.
Targets (issue 5): >= 5,000 events/s loopback, >= 1,500 events/s at 20 ms RTT.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from delay_proxy import DelayProxy

from agent.store.entrylog import EntryLog
from agent.sync.broker import broker_settings
from agent.sync.link import Link, LinkSignal
from agent.sync.service import SyncService
from tests.broker import Broker

EVENT = {"kind": "scan", "granted": True, "reason": "ok", "sub": "courier-000123",
         "cti": "9f" * 16, "method": "camera", "door": "unlocked",
         "site": "binhai-0001", "gate": "north-1", "detail": "x" * 60}


def drain_rate(port: int, count: int, inflight: int, workdir: Path) -> float:
    log = EntryLog(workdir, capacity=10 * count)
    for _ in range(count):
        log.append(EVENT)
    sync = SyncService(broker_settings(f"mqtt://127.0.0.1:{port}"), "binhai-0001", "north-1",
                       log, lambda _m: None, lambda: {}, inflight=inflight, poll_s=0.05)
    start = time.perf_counter()
    sync.start()
    while sync.drain.confirmed < count:
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    sync.stop()
    assert log.backlog == 0
    log.close()
    return count / elapsed


def puback_latency(port: int, samples: int) -> list[float]:
    signals: queue.SimpleQueue[LinkSignal] = queue.SimpleQueue()
    link = Link(broker_settings(f"mqtt://127.0.0.1:{port}"), "bench-latency", signals.put)
    link.open()
    assert signals.get(timeout=10).ok
    payload = b"x" * 300
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        mid = link.publish("bench/latency", payload)
        while True:
            sig = signals.get(timeout=10)
            if sig.kind == "puback" and sig.mid == mid:
                break
        out.append((time.perf_counter() - start) * 1000)
    link.close()
    return out


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and samples")
    args = parser.parse_args()
    n_loop, n_rtt, samples = (3000, 1500, 100) if args.quick else (20000, 6000, 400)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        broker = Broker(root / "broker")
        broker.start()
        proxy = DelayProxy(broker.port, one_way_s=0.010)
        try:
            rows = []
            for name, port, n in (("loopback", broker.port, n_loop),
                                  ("20 ms RTT", proxy.port, n_rtt)):
                lat = puback_latency(port, samples if port == broker.port else samples // 4)
                rates = {w: drain_rate(port, n, w, root / f"{name}-{w}".replace(" ", ""))
                         for w in (20, 100)}
                rows.append((name, n, rates[20], rates[100], statistics.median(lat), p99(lat)))
        finally:
            proxy.close()
            broker.kill()
    print(f"{'path':<10} {'events':>7} {'drain/s w=20':>13} {'drain/s w=100':>14} "
          f"{'PUBACK median ms':>17} {'p99 ms':>8}")
    for name, n, r20, r100, med, tail in rows:
        print(f"{name:<10} {n:>7} {r20:>13,.0f} {r100:>14,.0f} {med:>17.2f} {tail:>8.2f}")
    loop, rtt = rows[0][3], rows[1][3]
    print(f"targets: loopback {loop:,.0f}/s vs 5,000 ({loop / 5000:.1f}x); "
          f"20 ms RTT {rtt:,.0f}/s vs 1,500 ({rtt / 1500:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
