"""The centre soak: real ``gate-agent`` daemons (mock pins, serial scanners on ptys fed
couriers' signed presentations) and many simulated gates (the real outbox and sync code,
``ack = "centre"``) through a broker that is SIGKILLed, into two gate-centre processes on
one share group, one of them SIGKILLed and restarted mid-stream. Used by
tests/test_centre_soak.py (the issue's size) and scripts/soak_centre.py (any size; the
issue's full size by default, via scripts/soak-centre.sh)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from tests.broker import Broker
from tests.centre_support import CentreProcess, Gate, centre_files, stored
from tests.daemon_support import wait_until
from tests.postgres import Postgres
from tests.soak_daemons import DaemonGate

SITE = "soak"
KILL_EVERY_S = 4.0  # the broker is down ~1 s of each period


def soak(store: str, work: Path, *, gates: int = 50, daemons: int = 3, events: int = 20_000,
         daemon_events: int = 500, broker_kills: int = 5) -> dict[str, Any]:
    """Run the soak in ``work``: ``daemon_events`` scans at each daemon, the rest of
    ``events`` spread over the simulated gates, all produced while the broker is killed
    ``broker_kills`` times; return what was produced, stored and left over."""
    per_gate = (events - daemons * daemon_events) // gates
    spread_s = broker_kills * KILL_EVERY_S  # production lasts as long as the kills
    broker = Broker(work / "broker")
    broker.start()
    pg = None
    if store == "postgresql":
        pg = Postgres(work / "pg")
        pg.start()
        url = pg.create_database()
    else:
        url = f"sqlite://{work}/centre.db"
    files = centre_files(work, broker.url, url)
    centres = [CentreProcess(files.config, name="c1"), CentreProcess(files.config, "c2")]
    sims = [Gate(work, broker.url, SITE, f"g{i:03d}", ack_timeout_s=3.0)
            for i in range(gates)]
    reals = [DaemonGate(work, broker.url, files.ops, SITE, f"d{i}") for i in range(daemons)]
    ids: dict[str, list[str]] = {g.gate: [] for g in sims}
    started = time.monotonic()

    def produce(g: Gate) -> None:
        chunk = 5
        pause = spread_s / max(1, per_gate // chunk)
        while len(ids[g.gate]) < per_gate:
            ids[g.gate].extend(g.append(min(chunk, per_gate - len(ids[g.gate]))))
            time.sleep(pause)

    threads = [threading.Thread(target=produce, args=(g,)) for g in sims]
    threads += [threading.Thread(target=d.feed_credentials,
                                 args=(daemon_events, spread_s / daemon_events))
                for d in reals]
    try:
        for d in reals:
            d.launch()
        for d in reals:  # after its probe scan its scanner reads: every code fed is decided
            d.wait_scanning()
        probes = {d.gate: d.decisions() for d in reals}
        for g in sims:  # fifty connections at once on a busy machine take a while
            g.sync.start()
        # Fifty connections from one test process on a loaded 2-core machine have taken
        # over a minute (CONNACKs waited for CPU): a slow start is not what this tests.
        connected = wait_until(lambda: all(g.sync.connected for g in sims), 180)
        assert connected, f"{sum(not g.sync.connected for g in sims)} gates not connected"
        for t in threads:
            t.start()
        for n in range(broker_kills):
            time.sleep(KILL_EVERY_S - 1)
            broker.kill()
            time.sleep(1)
            broker.start()
            if n == 1:
                centres[0].kill()
                centres[0] = CentreProcess(files.config, name="c1b")
        for t in threads:
            t.join()
        decided = all(d.wait_decisions(probes[d.gate] + daemon_events, 60) for d in reals)
        drained = wait_until(lambda: all(g.backlog == 0 for g in sims), 300, step=0.5)
        drained = drained and wait_until(
            lambda: all(d.outbox_status()["backlog"] == 0 for d in reals), 120, step=1.0)
        rows = stored(url)
        left = sum(1 for g in sims if g.backlog)
        outboxes = [d.outbox_status() for d in reals]
        left += sum(1 for o in outboxes if o["backlog"])
        troubles = [p for o in outboxes for p in [*o["problems"], *o["lost"]]]
        logs = {d.gate: d.log() for d in reals}
        refused = [x["reason"] for d in reals for x in d.daemon.of("decision")
                   if not x["granted"]] if all(d.daemon for d in reals) else ["no daemon"]
    finally:
        for g in sims:
            g.stop()
        for d in reals:
            d.stop()
        for c in centres:
            c.kill()
        if pg is not None:
            pg.stop()
        broker.kill()
    for gate, entries in logs.items():  # a daemon's own log: every scan, and its boots
        ids[gate] = [e["id"] for e in entries]
    want = {(g, i) for g, lst in ids.items() for i in lst}
    got = [(g, i) for _, g, _, i in rows]
    in_order = all([i for _, gg, _, i in rows if gg == g] == lst for g, lst in ids.items())
    return {"appended": len(want), "stored": len(got), "distinct": len(set(got)),
            "missing": len(want - set(got)), "extra": len(set(got) - want),
            "daemon_entries": sum(len(v) for v in logs.values()), "daemons_decided": decided,
            "daemon_refused": refused,
            "daemon_outbox_problems": troubles,
            "in_order": in_order, "drained": drained, "gates_with_backlog": left,
            "seconds": round(time.monotonic() - started, 1)}  # connecting included


def ok(result: dict[str, Any]) -> bool:
    return bool(result["drained"] and result["in_order"] and not result["missing"]
                and not result["extra"] and result["stored"] == result["distinct"]
                == result["appended"] and not result["gates_with_backlog"]
                and result["daemons_decided"] and not result["daemon_refused"]
                and not result["daemon_outbox_problems"])
