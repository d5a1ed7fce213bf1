"""Holes at the centre, made the way they happen, with a real gate daemon and a real
``gate-centre`` process: a broker that PUBACKed and dropped events while its ACL denied
the gate's topic, and rows deleted from the centre's table after they were stored. The
sweeper finds each hole and its signed ``resend`` brings the events back, once."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.centre.store import connect, queries
from tests.broker import Broker
from tests.centre_support import CentreFiles, CentreProcess, centre_files, stored
from tests.daemon_support import wait_until
from tests.soak_daemons import DaemonGate

SITE = "binhai-0001"
GATE = "north-1"
ALLOW = "topic readwrite #\n"
DENY = f"topic deny gate/v1/{SITE}/{GATE}/events\n"
pytestmark = pytest.mark.slow


class AclBroker(Broker):
    """Mosquitto with an ACL file for anonymous clients, changed while it runs (SIGHUP
    reloads it); its log says when the reload happened and what it denied."""

    def __init__(self, workdir: Path) -> None:
        self.acl = workdir / "acl"
        workdir.mkdir(parents=True, exist_ok=True)
        self.acl.write_text(ALLOW, encoding="utf-8")
        super().__init__(workdir, extra_config=f"acl_file {self.acl}\n"
                         "log_type information\nlog_type debug\n")

    def _count(self, text: str) -> int:
        return self.log.read_text(encoding="utf-8", errors="replace").count(text)

    def denied(self) -> int:
        return self._count("Denied PUBLISH")

    def set_acl(self, text: str) -> None:
        before = self._count("Reloading config.")
        self.acl.write_text(text, encoding="utf-8")
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: self._count("Reloading config.") > before, 10)


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[AclBroker]:
    broker = AclBroker(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


def _files(tmp_path: Path, broker: Broker) -> CentreFiles:
    return centre_files(tmp_path, broker.url, f"sqlite://{tmp_path}/centre.db",
                        hole_after_s=1.0, resend_every_s=2.0, attempts=5)


def _seqs(url: str) -> list[int]:
    return [q for _, g, q, _ in stored(url) if g == GATE]


def _holes_and_lost(url: str) -> tuple[list[object], list[object]]:
    db = connect(url)
    try:
        row = next(r for r in queries.gates(db, time.time()) if r["gate"] == GATE)
    finally:
        db.close()
    return list(row["holes"]), list(row["lost"])


def test_events_an_acl_dropped_after_its_puback_are_found_and_resent(
        tmp_path: Path, acl_broker: AclBroker) -> None:
    files = _files(tmp_path, acl_broker)
    centre = CentreProcess(files.config)
    # ack = "puback": the gate trusts the broker's PUBACK, so only the centre can see
    # what the broker dropped.
    gate = DaemonGate(tmp_path, acl_broker.url, files.ops, SITE, GATE, ack="puback")
    try:
        gate.start()
        for n in range(2):
            gate.scan(f"courier-{n}")
        assert wait_until(lambda: _seqs(files.store_url) == [1, 2, 3], 20)
        acl_broker.set_acl(DENY + ALLOW)
        for n in range(2, 5):
            gate.scan(f"courier-{n}")
        assert wait_until(lambda: acl_broker.denied() >= 3, 20)
        # The gate was told they were delivered: nothing waits in its outbox.
        assert wait_until(lambda: gate.outbox_status()["backlog"] == 0, 20)
        acl_broker.set_acl(ALLOW)
        for n in range(5, 7):
            gate.scan(f"courier-{n}")
        assert wait_until(lambda: _seqs(files.store_url) == list(range(1, 9)), 30), \
            (_seqs(files.store_url), centre.stderr()[-2000:])
        assert "resend requested" in centre.stderr()
        logged = [(e["seq"], e["id"]) for e in gate.log()]
        assert [(q, i) for _, g, q, i in stored(files.store_url) if g == GATE] == logged
        assert wait_until(lambda: _holes_and_lost(files.store_url) == ([], []), 10)
    finally:
        gate.stop()
        centre.kill()


def test_rows_deleted_from_the_centres_table_are_found_and_resent(
        tmp_path: Path, broker: Broker) -> None:
    files = centre_files(tmp_path, broker.url, f"sqlite://{tmp_path}/centre.db",
                         hole_after_s=1.0, resend_every_s=2.0, attempts=5, audit_every_s=1.0)
    centre = CentreProcess(files.config)
    gate = DaemonGate(tmp_path, broker.url, files.ops, SITE, GATE)
    try:
        gate.start()
        for n in range(5):
            gate.scan(f"courier-{n}")
        assert wait_until(lambda: _seqs(files.store_url) == list(range(1, 7)), 20)
        assert wait_until(lambda: gate.outbox_status()["backlog"] == 0, 20)
        # Rows below the sweeper's mark (all stored and acknowledged) go: a hand-made
        # DELETE, or a restore that missed them.
        db = connect(files.store_url)
        try:
            with db.transaction():
                db.execute("DELETE FROM entries WHERE gate = ? AND seq IN (2, 3, 5)", (GATE,))
        finally:
            db.close()
        assert wait_until(lambda: _seqs(files.store_url) == list(range(1, 7)), 30), \
            (_seqs(files.store_url), centre.stderr()[-2000:])
        logged = [(e["seq"], e["id"]) for e in gate.log()]
        assert [(q, i) for _, g, q, i in stored(files.store_url) if g == GATE] == logged
        assert "rows missing below" in centre.stderr()
        assert wait_until(lambda: _holes_and_lost(files.store_url) == ([], []), 10)
    finally:
        gate.stop()
        centre.kill()


def test_audit_lowers_only_a_mark_whose_rows_are_gone_not_one_with_lost_ranges(
        store_url: str) -> None:
    from agent.centre.store import holes
    from agent.centre.store.schema import upgrade

    db = connect(store_url)
    try:
        upgrade(db)
        with db.transaction():
            db.executemany("INSERT INTO entries (site, gate, seq, id, event, received_at) "
                           "VALUES (?, ?, ?, ?, '{}', 0)",
                           [(SITE, g, q, f"{g}{q}") for g in ("a", "b")
                            for q in (1, 2, 3, 7, 8, 9, 10)])
            db.executemany("INSERT INTO seq_marks (site, gate, upto) VALUES (?, ?, 10)",
                           [(SITE, "a"), (SITE, "b")])
            for g in ("a", "b"):
                holes.record_lost(db, SITE, g, 4, 6, 0.0, "pruned at the gate")
        assert holes.audit(db) == []  # 4-6 are recorded lost: nothing to look for
        with db.transaction():
            db.execute("DELETE FROM entries WHERE gate = 'b' AND seq = 8")
        assert holes.audit(db) == [(SITE, "b", 10, 7)]
        holes.sweep(db, 100.0)
        assert [tuple(h) for r in queries.gates(db, 100.0) if r["gate"] == "b"
                for h in r["holes"]] == [(8, 8)]
        assert holes.audit(db) == []
    finally:
        db.close()
