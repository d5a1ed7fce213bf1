"""Outbox drain rate and publish->PUBACK latency, loopback and at 20 ms RTT.

    .venv/bin/python benchmarks/bench_sync.py [--quick]

Drain: N events already in a real EntryLog (SQLite, synchronous=FULL) are published
QoS 1 by SyncService and deleted on PUBACK; the rate includes all outbox bookkeeping.
Latency: one message at a time on a Link, publish() to its PUBACK.
Targets (issue 5): >= 5,000 events/s loopback, >= 1,500 events/s at 20 ms RTT (drain with
100 in flight). Beside them, raw paho in the same run: the same number of messages of the
same size published QoS 1 with the same window, timed to the last PUBACK (no outbox).
Ends with the targets table and exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import json
import queue
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as paho
from delay_proxy import DelayProxy
from paho.mqtt.enums import CallbackAPIVersion
from targets import Row, at_least, report

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


def raw_paho_rate(port: int, count: int, inflight: int) -> float:
    """Raw paho: ``count`` QoS 1 publishes of an event-sized payload, to the last PUBACK."""
    payload = json.dumps({"id": "0" * 32, "seq": 1, **EVENT}).encode()
    done = threading.Event()
    connected = threading.Event()
    acked = 0

    def on_publish(*_args: object) -> None:
        nonlocal acked
        acked += 1
        if acked >= count:
            done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw",
                         protocol=paho.MQTTv311)
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.on_connect = lambda *_a: connected.set()
    client.connect("127.0.0.1", port)
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Link does
    client.loop_start()
    assert connected.wait(10)
    start = time.perf_counter()
    for _ in range(count):
        client.publish("bench/raw", payload, qos=1)
    assert done.wait(120), f"raw paho: {acked}/{count} acknowledged"
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
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
                raw = raw_paho_rate(port, n, 100)
                rows.append((name, n, rates[20], rates[100], statistics.median(lat), p99(lat),
                             raw))
        finally:
            proxy.close()
            broker.kill()
    print(f"{'path':<10} {'events':>7} {'drain/s w=20':>13} {'drain/s w=100':>14} "
          f"{'PUBACK median ms':>17} {'p99 ms':>8}")
    for name, n, r20, r100, med, tail, _raw in rows:
        print(f"{name:<10} {n:>7} {r20:>13,.0f} {r100:>14,.0f} {med:>17.2f} {tail:>8.2f}")
    targets = []
    for (name, _n, _r20, rate, _med, _tail, raw), floor in zip(rows, (5000, 1500), strict=True):
        targets.append(Row(f"drain {name}, 100 in flight", f"{rate:,.0f}/s "
                           f"({rate / raw:.2f}x raw)", f">= {floor:,}/s",
                           f"paho {raw:,.0f}/s", at_least(rate, floor)))
    return report("bench_sync", targets)


if __name__ == "__main__":
    raise SystemExit(main())
