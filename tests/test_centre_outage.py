"""The centre's database down for 30 s during ingest, with real parts: two ``gate-centre``
processes on one share group, simulated gates and a real gate daemon sending all along,
PostgreSQL stopped (fast shutdown) or the SQLite file locked by another writer. Nothing
is acknowledged while nothing can be stored, no gate lets go of an event, and after the
database returns every event is stored exactly once and every outbox empties."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.broker import Broker
from tests.centre_support import CentreProcess, Gate, centre_files, stored
from tests.daemon_support import wait_until
from tests.postgres import Postgres
from tests.soak_daemons import DaemonGate
from tests.sync_support import Subscriber

SITE = "binhai-0001"
OUTAGE_S = 30.0  # the figure
pytestmark = pytest.mark.slow


class Outage:
    """The database going away and coming back: PostgreSQL stopped and started, or an
    exclusive lock on the SQLite file held by another process's transaction."""

    def __init__(self, store: str, tmp: Path) -> None:
        self.store = store
        self.pg: Postgres | None = None
        self.lock: sqlite3.Connection | None = None
        if store == "postgresql":
            self.pg = Postgres(tmp / "pg")
            self.pg.start()
            self.url = self.pg.create_database()
        else:
            self.path = tmp / "centre.db"
            self.url = f"sqlite://{self.path}"

    def begin(self) -> None:
        if self.pg is not None:
            self.pg.stop()
        else:
            self.lock = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.lock.execute("BEGIN EXCLUSIVE")

    def end(self) -> None:
        if self.pg is not None:
            self.pg.start()
        elif self.lock is not None:
            self.lock.execute("ROLLBACK")
            self.lock.close()
            self.lock = None

    def close(self) -> None:
        if self.lock is not None:
            self.lock.close()
        if self.pg is not None:
            self.pg.stop()


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_database_down_30_s_nothing_acknowledged_unstored_nothing_lost(
        store: str, tmp_path: Path, broker: Broker) -> None:
    outage = Outage(store, tmp_path)
    files = centre_files(tmp_path, broker.url, outage.url)
    centres = [CentreProcess(files.config, name="c1"), CentreProcess(files.config, "c2")]
    acks = Subscriber(broker.url, [f"gate/v1/{SITE}/+/events/ack"])
    sims = [Gate(tmp_path, broker.url, SITE, f"g{i}", ack_timeout_s=3.0).start()
            for i in range(5)]
    daemon = DaemonGate(tmp_path, broker.url, files.ops, SITE, "north-1")
    ack_times: list[float] = []
    acks.client.on_message = _timed(acks, ack_times)
    stop = threading.Event()

    def produce(g: Gate) -> None:
        while not stop.wait(0.5):
            g.append(5)

    threads = [threading.Thread(target=produce, args=(g,)) for g in sims]
    threads.append(threading.Thread(target=daemon.feed_credentials, args=(10_000, 0.25, stop)))
    try:
        daemon.start()
        for t in threads:
            t.start()
        assert wait_until(lambda: len(stored(outage.url)) > 50, 20)
        outage.begin()
        began = time.monotonic()
        waiting = {g.gate: g.backlog for g in sims}
        assert stop.wait(OUTAGE_S) is False
        # Acks of batches committed just before the database went may still be on their
        # way for a moment (a loaded machine); after that, none: nothing was stored.
        late = [t for t in ack_times if t > began + 3.0]
        assert late == [], f"{len(late)} acks while the database was down"
        assert all(g.backlog >= waiting[g.gate] for g in sims), \
            ({g.gate: g.backlog for g in sims}, waiting)
        assert all(c.proc.poll() is None for c in centres)  # survived, with backoff
        outage.end()
        assert wait_until(lambda: len(ack_times) > 0 and ack_times[-1] > began + OUTAGE_S, 30)
        stop.set()
        for t in threads:
            t.join(30)
        assert wait_until(lambda: all(g.backlog == 0 for g in sims), 60), \
            [g.backlog for g in sims]
        assert wait_until(lambda: daemon.outbox_status()["backlog"] == 0, 60, step=1.0)
        rows = stored(outage.url)
        for g in sims:
            mine = [(q, i) for _, gg, q, i in rows if gg == g.gate]
            assert mine == [(e.seq, e.id) for e in g.outbox.history()]
        mine = [(q, i) for _, gg, q, i in rows if gg == "north-1"]
        assert mine == [(e["seq"], e["id"]) for e in daemon.log()]
        assert len(rows) == len(set((g, q) for _, g, q, _ in rows))
    finally:
        stop.set()
        for g in sims:
            g.stop()
        daemon.stop()
        acks.close()
        for c in centres:
            c.kill()
        outage.close()


def _timed(acks: Subscriber, times: list[float]) -> Callable[[Any, Any, Any], None]:
    """The subscriber's handler, also noting when each ack arrived."""
    record = acks.client.on_message
    assert record is not None

    def handler(client: Any, userdata: Any, msg: Any) -> None:
        times.append(time.monotonic())
        record(client, userdata, msg)
    return handler
