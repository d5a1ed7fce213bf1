"""gate-centre ingest: events/s stored and acknowledged, ack latency, a 200,000-event backlog.

    .venv/bin/python benchmarks/bench_centre.py [--quick] [--gates N] [--events N]
        [--backlog N] [--store sqlite|postgresql] [--batch-ms MS] [--batch-max N]
        [--batch-per-gate N]

Through a loopback Mosquitto, from 1,000 simulated gates (one topic each, real event
records with id and seq, QoS 1; ``centre_load.py`` pre-encodes them so the load offered
is far above what the centre takes), into one ``gate-centre run`` process, on SQLite
(WAL, synchronous=FULL) and on a real PostgreSQL (fsync on) started here:

- raw: a plain paho subscriber (MQTT 5, QoS 1, a shared subscription like the centre's)
  counting the same burst, alone, in the same run: what Python + paho can take here;
- throughput: a burst of N events; rate = N / (first publish -> last ``events/ack``),
  every seq stored exactly once and acknowledged (checked in the database at the end);
- latency: a paced stream (1,000 events/s over the 1,000 gates), publish -> ack;
- backlog: one gate comes back with 200,000 events (20,000 with ``--quick``) and at most
  100 unacknowledged by the centre at once (the gate's default ``[mqtt] inflight``,
  ``ack = "centre"``), while the 999 others keep the paced stream: time until all are
  stored and acknowledged, and the others' p99 against the paced run without it;
- one real gate (EntryLog + SyncService, ``ack = "centre"``) draining its outbox.
Targets (issue 11): >= 5,000 events/s per process into PostgreSQL, >= 3,000/s into
SQLite, ack p50 <= 50 ms and p99 <= 250 ms, the backlog stored at >= 200,000 / 90 s
with the others' p99 within 2x. Ends with the targets table; exit 1 on a miss.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from centre_load import AckCollector, publisher  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from targets import Row, at_least, at_most, report  # noqa: E402

from agent.centre.store import connect  # noqa: E402
from agent.centre.store.ingest import Incoming, store_events  # noqa: E402
from agent.centre.store.schema import upgrade  # noqa: E402
from agent.protocol.keys import write_keypair  # noqa: E402
from agent.store.entrylog import EntryLog  # noqa: E402
from agent.sync.broker import broker_settings  # noqa: E402
from agent.sync.service import SyncService  # noqa: E402
from agent.sync.uplink import CentreAcknowledger  # noqa: E402
from tests.broker import Broker  # noqa: E402
from tests.postgres import Postgres  # noqa: E402

SITE = "bench"
TARGETS = {"sqlite": 3000.0, "postgresql": 5000.0}
P50_MS, P99_MS = 50.0, 250.0
BACKLOG_RATE = 200_000 / 90  # the issue: 200,000 events stored in <= 90 s
GATE_INFLIGHT = 100  # agent.core.config MqttSection.inflight default
PACE = 1000.0  # events/s of the paced stream (1,000 gates, ~1 event/s each)


class Load:
    """Publisher processes (``centre_load.publisher``) started together: ``go`` then
    ``stop`` (paced) or wait; their sent times and per-gate seqs are kept here."""

    def __init__(self, port: int, gates: list[str], site: str = SITE) -> None:
        self.port, self.site = port, site
        self.seq = dict.fromkeys(gates, 0)
        self.sent: dict[tuple[str, int], float] = {}

    def run(self, specs: list[dict[str, Any]], *, stop_when: Any = None) -> float:
        """Start every spec's publisher, say go; stop paced ones when ``stop_when()``
        returns (if given); wait for all; return the go time."""
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with tempfile.TemporaryDirectory() as tmp:
            children = []
            for i, spec in enumerate(specs):
                path = Path(tmp) / f"spec{i}.json"
                first = {g: self.seq[g] for g in spec.pop("gate_list")}
                path.write_text(json.dumps({**spec, "gates": first, "site": self.site}))
                children.append((path, subprocess.Popen(
                    [sys.executable, __file__, "--publisher", str(self.port), str(path)],
                    stdout=subprocess.PIPE, text=True, env=env)))
            for _path, child in children:
                assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            start = time.time()
            (Path(tmp) / "go").write_text("")
            if stop_when is not None:
                stop_when()
                (Path(tmp) / "stop").write_text("")
            for path, child in children:
                if child.wait(900) != 0:
                    raise RuntimeError(f"a load publisher failed ({path.name})")
                for gate, seq, at in json.loads(Path(f"{path}.sent").read_text())["sent"]:
                    self.sent[(gate, seq)] = at
                    self.seq[gate] = max(self.seq[gate], seq)
        return start


def raw_counter(port: int, count: int) -> None:
    """Child process: a plain paho subscriber (MQTT 5, QoS 1, shared subscription, as the
    centre connects) counting ``count`` events; prints the last one's time."""
    got = threading.Event()
    n = [0]
    last = [0.0]

    def on_message(_c: Any, _u: Any, _m: paho.MQTTMessage) -> None:
        n[0] += 1
        if n[0] >= count:
            last[0] = time.time()
            got.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-raw-{os.getpid()}",
                         protocol=paho.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.on_message = on_message
    ready = threading.Event()
    client.on_subscribe = lambda *a: ready.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe("$share/raw/gate/v1/raw/+/events", qos=1)
    ready.wait(10)
    print("ready", flush=True)
    got.wait(600)
    print(last[0], flush=True)


def raw_rate(port: int, gates: list[str], events: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    raw = subprocess.Popen([sys.executable, __file__, "--raw-counter", str(port),
                            str(events)], stdout=subprocess.PIPE, text=True, env=env)
    assert raw.stdout is not None and raw.stdout.readline().strip() == "ready"
    load = Load(port, gates, site="raw")
    start = load.run([{"mode": "burst", "count": events, "gate_list": gates}])
    end = float(raw.stdout.readline())
    raw.wait(30)
    return events / (end - start)


def centre_config(work: Path, port: int, store_url: str, batch: dict[str, Any]) -> Path:
    ops = work / "keys"
    key, pub = write_keypair(ops / "private", "ops-centre")
    (ops / "ops").mkdir(parents=True, exist_ok=True)
    (ops / "ops" / "ops-centre.pub").write_bytes(pub.read_bytes())
    config = work / "centre.toml"
    extra = "".join(f"{k} = {v}\n" for k, v in batch.items() if v is not None)
    config.write_text(f"""[centre]
id = "bench"
[store]
url = "{store_url}"
{extra}[mqtt]
url = "mqtt://127.0.0.1:{port}"
[keys]
ops_key = "{key}"
trust_ops_dir = "{ops / 'ops'}"
[sweep]
every_s = 30
[time]
publish_every_s = 0
""", encoding="utf-8")
    db = connect(store_url)
    upgrade(db)
    db.close()
    return config


def real_gate(port: int, work: Path, count: int) -> float:
    """One real gate (EntryLog + SyncService, ack = "centre", inflight 100) drains a
    backlog of ``count`` events through the centre; events/s until its outbox is empty."""
    log = EntryLog(work / "gate", capacity=10 * count)
    event = {"kind": "scan", "granted": True, "reason": "ok", "sub": "courier-1",
             "site": SITE, "gate": "realgate", "method": "camera", "door": "unlocked"}
    for _ in range(count):
        log.append(event)
    sync = SyncService(broker_settings(f"mqtt://127.0.0.1:{port}"), SITE, "realgate", log,
                       lambda _m: None, lambda: {}, inflight=GATE_INFLIGHT, poll_s=0.05,
                       acknowledger=CentreAcknowledger(time.monotonic, 30.0))
    start = time.perf_counter()
    sync.start()
    while log.backlog:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    sync.stop()
    log.close()
    return count / elapsed


def _latencies(load: Load, acks: AckCollector, keys: set[tuple[str, int]]) -> list[float]:
    with acks.lock:
        return sorted((acks.acked[k] - load.sent[k]) * 1000 for k in keys if k in acks.acked)


def _p(values: list[float], q: float) -> float:
    return values[max(0, int(len(values) * q) - 1)] if values else float("inf")


def run_store(kind: str, store_url: str, broker: Broker, work: Path, args: argparse.Namespace,
              sizes: dict[str, int]) -> dict[str, Any]:
    gates = [f"g{i:04d}" for i in range(args.gates)]
    raw = raw_rate(broker.port, [f"r{i:04d}" for i in range(args.gates)], sizes["events"])
    config = centre_config(work, broker.port, store_url,
                           {"batch_ms": args.batch_ms, "batch_max": args.batch_max,
                            "batch_per_gate": args.batch_per_gate})
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    errors = work / "centre.log"
    with open(errors, "w", encoding="utf-8") as stderr:
        centre = subprocess.Popen([sys.executable, "-m", "agent.cli.gate_centre", "run",
                                   "--config", str(config)], stdout=subprocess.PIPE,
                                  stderr=stderr, env=env, text=True)
    assert centre.stdout is not None
    if centre.stdout.readline().strip() != "started":
        raise RuntimeError(f"gate-centre did not start: {errors.read_text()[-2000:]}")
    time.sleep(1.0)  # subscribed
    acks = AckCollector(broker.port, SITE)
    load = Load(broker.port, [*gates, "backlog"])
    out: dict[str, Any] = {"store": kind, "raw": raw}
    try:
        events = sizes["events"]
        start = load.run([{"mode": "burst", "count": events, "gate_list": gates}])
        ok = acks.wait(events, 300)
        with acks.lock:
            last = max(acks.acked.values())
        out["rate"] = events / (last - start) if ok else 0.0
        # Paced: each gate about once a second.
        before = set(load.sent)
        load.run([{"mode": "paced", "count": sizes["paced"], "rate": PACE,
                   "gate_list": gates}])
        acks.wait(len(load.sent), 60)
        lat = _latencies(load, acks, set(load.sent) - before)
        out["p50"], out["p99"] = statistics.median(lat) if lat else float("inf"), _p(lat, .99)
        # Backlog: one gate with a window of 100, the 999 others paced meanwhile.
        before = set(load.sent)
        backlog, others = sizes["backlog"], gates[:-1]
        paced = int(PACE * max(30.0, 2.5 * backlog / BACKLOG_RATE))  # outlasts the drain

        def backlog_acked() -> None:
            acks.wait_until(lambda: acks.counts.get("backlog", 0) >= backlog, 600)
            with acks.lock:
                out["backlog_end"] = max(acks.acked[("backlog", s)]
                                         for s in range(1, backlog + 1)
                                         if ("backlog", s) in acks.acked)

        start = load.run([{"mode": "window", "count": backlog, "window": GATE_INFLIGHT,
                           "gate_list": ["backlog"]},
                          {"mode": "paced", "count": paced, "rate": PACE * 0.999,
                           "gate_list": others}], stop_when=backlog_acked)
        out["backlog_s"] = out["backlog_end"] - start
        acks.wait(len(load.sent), 60)
        lat = _latencies(load, acks, {k for k in set(load.sent) - before if k[0] != "backlog"})
        out["backlog_p99"] = _p(lat, .99)
        out["drain"] = real_gate(broker.port, work, sizes["real"])
    finally:
        acks.close()
        centre.terminate()
        centre.wait(30)
    db = connect(store_url)
    stored = db.query("SELECT count(*), count(DISTINCT site || '/' || gate || '/' || "
                      "CAST(seq AS TEXT)) FROM entries")[0]
    db.close()
    out["stored"], out["distinct"] = int(stored[0]), int(stored[1])
    out["expected"] = len(load.sent) + sizes["real"]
    out["acked"] = all(k in acks.acked for k in load.sent)
    return out


def store_only(url: str, gates: int, events: int) -> float:
    """The store alone: ``store_events`` in batches of 500 spread over the gates (the
    ceiling the database sets, without MQTT)."""
    db = connect(url)
    upgrade(db)
    now = time.time()
    items = [Incoming(SITE, f"s{n % gates:04d}", n // gates + 1, uuid.uuid4().hex,
                      {"ts": "2026-12-01T10:00:00.000Z", "kind": "scan", "granted": True,
                       "reason": "ok", "sub": "courier-1"}, now) for n in range(events)]
    start = time.perf_counter()
    for i in range(0, events, 500):
        store_events(db, items[i:i + 500])
    elapsed = time.perf_counter() - start
    db.close()
    return events / elapsed


def rows_for(r: dict[str, Any], sizes: dict[str, int]) -> list[Row]:
    kind, target = r["store"], TARGETS[r["store"]]
    raw = f"paho {r['raw']:,.0f}/s (x{r['rate'] / r['raw']:.2f})"
    backlog_target = sizes["backlog"] / BACKLOG_RATE
    exact = r["stored"] == r["distinct"] == r["expected"] and r["acked"]
    return [
        Row(f"{kind}: stored+acked events/s", f"{r['rate']:,.0f}", f">= {target:,.0f}", raw,
            at_least(r["rate"], target)),
        Row(f"{kind}: ack p50 ms (paced {PACE:.0f}/s)", f"{r['p50']:.1f}", f"<= {P50_MS:.0f}",
            "", at_most(r["p50"], P50_MS)),
        Row(f"{kind}: ack p99 ms (paced)", f"{r['p99']:.1f}", f"<= {P99_MS:.0f}", "",
            at_most(r["p99"], P99_MS)),
        Row(f"{kind}: {sizes['backlog']:,}-event backlog stored, s",
            f"{r['backlog_s']:.1f} ({sizes['backlog'] / r['backlog_s']:,.0f}/s)",
            f"<= {backlog_target:.0f}", "", at_most(r["backlog_s"], backlog_target)),
        Row(f"{kind}: others' p99 ms during the backlog", f"{r['backlog_p99']:.1f}",
            f"<= 2 x {r['p99']:.1f}", "", at_most(r["backlog_p99"], 2 * r["p99"])),
        Row(f"{kind}: every event stored once and acked", f"{r['stored']:,} rows",
            f"{r['expected']:,}", "", exact),
        Row(f"{kind}: store alone, 500-row batches, events/s", f"{r['store_only']:,.0f}"),
        Row(f"{kind}: one real gate draining (inflight {GATE_INFLIGHT}), events/s",
            f"{r['drain']:,.0f}"),
    ]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--publisher"]:
        publisher(int(argv[1]), argv[2])
        return 0
    if argv[:1] == ["--raw-counter"]:
        raw_counter(int(argv[1]), int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--gates", type=int, default=1000)
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--backlog", type=int, default=None)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), action="append")
    parser.add_argument("--batch-ms", type=float, default=None)
    parser.add_argument("--batch-max", type=int, default=None)
    parser.add_argument("--batch-per-gate", type=int, default=None)
    args = parser.parse_args(argv)
    sizes = {"events": args.events or (10_000 if args.quick else 40_000),
             "paced": 3000 if args.quick else 10_000,
             "backlog": args.backlog or (20_000 if args.quick else 200_000),
             "real": 2000 if args.quick else 5000}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker")
        broker.start()
        pg = Postgres(work / "pg")
        pg.start()
        try:
            for kind in args.store or ["sqlite", "postgresql"]:
                url = f"sqlite://{work}/centre.db" if kind == "sqlite" else pg.create_database()
                results.append(run_store(kind, url, broker, work / kind, args, sizes))
                results[-1]["store_only"] = store_only(url, args.gates, sizes["events"])
        finally:
            pg.stop()
            broker.kill()
    load = os.getloadavg()
    print(f"gate-centre ingest: {args.gates} gates, {sizes['events']:,}-event burst, paced "
          f"{PACE:.0f}/s, loopback Mosquitto, load average {load[0]:.1f} {load[1]:.1f}")
    return report("bench_centre", [row for r in results for row in rows_for(r, sizes)])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
