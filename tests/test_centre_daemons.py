"""gate-centre with real gate daemons (``gate-agent run`` on mock pins, a serial scanner
on a pty fed couriers' signed presentations): a revocation made with ``gate-centre revoke`` denies
the next scan at the gate, a gate that missed two deltas while it was away is repaired
by its own resync request, answered by the running ``gate-centre`` process, and a card
restored from an old image, numbering its new scans with seqs the centre has, is a
conflict stored apart and alarmed, never over the stored rows."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.centre.store import connect, queries
from agent.cli import gate_centre
from agent.protocol.revocation import parse_revocation_list
from agent.sync.topics import REVOCATIONS_DELTA, REVOCATIONS_FULL, GateTopics
from tests.broker import Broker
from tests.centre_support import CentreFiles, CentreProcess, centre_files
from tests.daemon_support import wait_until
from tests.soak_daemons import DaemonGate
from tests.sync_support import Subscriber

SITE = "binhai-0001"
pytestmark = pytest.mark.slow


@pytest.fixture
def files(tmp_path: Path, broker: Broker) -> CentreFiles:
    return centre_files(tmp_path, broker.url, f"sqlite://{tmp_path}/centre.db")


@pytest.fixture
def centre(files: CentreFiles) -> Iterator[CentreProcess]:
    proc = CentreProcess(files.config)
    try:
        yield proc
    finally:
        proc.kill()


def _cli(files: CentreFiles, *args: str) -> int:
    return gate_centre.main([*args, "--config", str(files.config)])


def _list_version(watch: Subscriber, topics: GateTopics) -> Callable[[int], bool]:
    """Waits until the gate's own status says it has list ``version`` installed."""
    def reached(version: int) -> bool:
        def seen(msgs: list[tuple[str, bytes, bool]]) -> bool:
            for topic, payload, _ in reversed(msgs):
                if topic == topics.status and payload:
                    status: dict[str, Any] = json.loads(payload)
                    return bool(status.get("revocations", {}).get("version") == version)
            return False
        return watch.wait_for(seen, 20)
    return reached


def test_revoke_denies_the_next_scan_at_a_real_gate_and_resync_repairs_missed_deltas(
        files: CentreFiles, centre: CentreProcess, broker: Broker, tmp_path: Path) -> None:
    gate = DaemonGate(tmp_path, broker.url, files.ops, SITE, "north-1")
    topics = GateTopics(SITE, "north-1")
    watch = Subscriber(broker.url, [topics.status, topics.resync, REVOCATIONS_DELTA,
                                    REVOCATIONS_FULL])
    has = _list_version(watch, topics)
    try:
        gate.start()
        assert has(1), gate.daemon.stderr() if gate.daemon else ""
        assert gate.scan("courier-7")["reason"] == "ok"
        assert _cli(files, "revoke", "--sub", "courier-7", "--reason", "phone lost") == 0
        assert has(2), gate.daemon.stderr() if gate.daemon else ""
        denied = gate.scan("courier-7")
        assert (denied["granted"], denied["reason"]) == (False, "revoked")

        # Away (stopped) while two more changes are made ...
        gate.stop()
        assert _cli(files, "revoke", "--sub", "courier-8") == 0
        assert _cli(files, "unrevoke", "--sub", "courier-7") == 0
        deltas = [p for t, p, _ in watch.messages if t == REVOCATIONS_DELTA]
        late = parse_revocation_list(deltas[-1], files.ops.keyring, time.time())
        assert (late.kind, late.base, late.version) == ("delta", 3, 4)
        # ... and the broker lost its retained full list meanwhile (restarted from an old
        # persistence file, or cleaned by hand): coming back, the gate finds none.
        watch.publish(REVOCATIONS_FULL, b"", retain=True)
        gate.start()
        assert has(2)
        assert gate.scan("courier-8")["reason"] == "ok"  # not known here yet
        # The next delta it sees (version 4, base 3: delivered late) does not follow its
        # version 2: it asks for a resync, and the centre answers with the full list.
        fulls_before = sum(t == REVOCATIONS_FULL for t, _, _ in watch.messages)
        watch.publish(REVOCATIONS_DELTA, deltas[-1])  # the centre's own signed bytes
        assert has(4), gate.daemon.stderr() if gate.daemon else ""
        asked = [json.loads(p) for t, p, _ in watch.messages if t == topics.resync]
        assert asked and asked[-1]["have_version"] == 2, asked
        assert sum(t == REVOCATIONS_FULL for t, _, _ in watch.messages) > fulls_before
        assert gate.scan("courier-8")["reason"] == "revoked"
        assert gate.scan("courier-7")["reason"] == "ok"
        assert wait_until(lambda: gate.outbox_status()["backlog"] == 0, 30)
        assert gate.outbox_status()["problems"] == []
    finally:
        gate.stop()
        watch.close()
    # Every decision reached the centre's store, with its reason.
    db = connect(files.store_url)
    try:
        got = [(e["sub"], e["reason"]) for e in queries.entries(db, site=SITE)
               if e.get("sub") in ("courier-7", "courier-8")]
    finally:
        db.close()
    assert got == [("courier-7", "ok"), ("courier-7", "revoked"), ("courier-8", "ok"),
                   ("courier-8", "revoked"), ("courier-7", "ok")]


def test_a_restored_card_reusing_seqs_is_a_conflict_kept_apart_and_alarmed(
        files: CentreFiles, centre: CentreProcess, broker: Broker, tmp_path: Path) -> None:
    gate = DaemonGate(tmp_path, broker.url, files.ops, SITE, "north-1")
    state = gate.root / "state"
    backup = tmp_path / "card-backup"

    def settled() -> bool:
        return gate.outbox_status()["backlog"] == 0

    try:
        gate.start()
        gate.scan("courier-1")
        assert wait_until(settled, 20)
        gate.stop()
        shutil.copytree(state, backup)  # the card imaged while the gate was off
        gate.start()
        for n in range(2, 4):
            gate.scan(f"courier-{n}")
        assert wait_until(settled, 20)
        gate.stop()
        first = {e["seq"]: e["id"] for e in gate.log()}
        shutil.rmtree(state)  # ... and written back over the card later
        shutil.copytree(backup, state)
        gate.start()
        for n in range(4, 6):
            gate.scan(f"courier-{n}")
        assert wait_until(settled, 20)  # conflicts are stored (apart): acknowledged
        second = {e["seq"]: e["id"] for e in gate.log()}
    finally:
        gate.stop()
    clashing = {q: i for q, i in second.items() if q in first and first[q] != i}
    assert len(clashing) >= 2, (first, second)
    db = connect(files.store_url)
    try:
        kept = {q: i for _, g, q, i in
                db.query("SELECT site, gate, seq, id FROM entries WHERE gate = 'north-1'")}
        apart = {c["seq"]: c["id"] for c in queries.conflicts(db)}
        row = next(r for r in queries.gates(db, time.time()) if r["gate"] == "north-1")
    finally:
        db.close()
    assert {q: kept[q] for q in clashing} == {q: first[q] for q in clashing}  # never overwritten
    assert apart == clashing
    assert row["conflicts"] == len(clashing) and "conflicts" in row["problems"]
    assert "conflict" in centre.stderr().lower()
