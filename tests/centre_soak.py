"""The centre soak: many gates' real outboxes (EntryLog + SyncService, ``ack = "centre"``)
through a broker that is SIGKILLed, into two gate-centre processes on one share group,
one of them SIGKILLed and restarted mid-stream. Used by tests/test_centre_soak.py (slow)
and scripts/soak_centre.py (other sizes)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from tests.broker import Broker
from tests.centre_support import CentreProcess, Gate, centre_files, stored
from tests.daemon_support import wait_until
from tests.postgres import Postgres


def soak(store: str, work: Path, *, gates: int = 50, events: int = 20_000,
         broker_kills: int = 5) -> dict[str, Any]:
    """Run the soak in ``work``; return what was appended, stored and left over."""
    per_gate = events // gates
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
    sims = [Gate(work, broker.url, "soak", f"g{i:03d}", ack_timeout_s=3.0)
            for i in range(gates)]
    ids: dict[str, list[str]] = {g.gate: [] for g in sims}
    started = time.monotonic()

    def produce(g: Gate) -> None:
        while len(ids[g.gate]) < per_gate:
            ids[g.gate].extend(g.append(min(10, per_gate - len(ids[g.gate]))))
            time.sleep(0.05)

    threads = [threading.Thread(target=produce, args=(g,)) for g in sims]
    try:
        for g in sims:  # fifty connections at once on a busy machine take a while
            g.sync.start()
        # Fifty connections from one test process on a loaded 2-core machine have taken
        # over a minute (CONNACKs waited for CPU): a slow start is not what this tests.
        connected = wait_until(lambda: all(g.sync.connected for g in sims), 180)
        assert connected, f"{sum(not g.sync.connected for g in sims)} gates not connected"
        for t in threads:
            t.start()
        for n in range(broker_kills):
            time.sleep(3)
            broker.kill()
            time.sleep(1)
            broker.start()
            if n == 1:
                centres[0].kill()
                centres[0] = CentreProcess(files.config, name="c1b")
        for t in threads:
            t.join()
        drained = wait_until(lambda: all(g.backlog == 0 for g in sims), 300, step=0.5)
        rows = stored(url)
        left = sum(1 for g in sims if g.backlog)
    finally:
        for g in sims:
            g.stop()
        for c in centres:
            c.kill()
        if pg is not None:
            pg.stop()
        broker.kill()
    want = {(g, i) for g, lst in ids.items() for i in lst}
    got = [(g, i) for _, g, _, i in rows]
    in_order = all([i for _, gg, _, i in rows if gg == g] == lst for g, lst in ids.items())
    return {"appended": len(want), "stored": len(got), "distinct": len(set(got)),
            "missing": len(want - set(got)), "extra": len(set(got) - want),
            "in_order": in_order, "drained": drained, "gates_with_backlog": left,
            "seconds": round(time.monotonic() - started, 1)}  # connecting included


def ok(result: dict[str, Any]) -> bool:
    return bool(result["drained"] and result["in_order"] and not result["missing"]
                and not result["extra"] and result["stored"] == result["distinct"]
                == result["appended"] and not result["gates_with_backlog"])
