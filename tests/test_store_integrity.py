"""State that proves itself: damaged, missing, older or rolled-back copies are found at
start against the high-water marks kept in meta.json and in the entry log database."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.core.clock import FixedClock
from agent.core.errors import CorruptStateError
from agent.store import EntryLog, Meta, RevocationStore
from agent.store.atomic_storage import AtomicJSONStorage
from agent.store.recovery import clear_recoveries, read_recoveries
from agent.store.replaylog import LoggedReplays
from tests.test_store_revocations import T0, cti, delta_list, full_list


@dataclass
class Stores:
    meta: Meta
    entry_log: EntryLog
    revocations: RevocationStore


@contextmanager
def opened(state: Path, clock: FixedClock, *, clean: bool = True) -> Iterator[Stores]:
    """The stores as the daemon opens them: meta, the log (second copy), the list."""
    meta = Meta(state, clock=clock)
    entry_log = EntryLog(state, clock=clock, meta=meta)
    revocations = RevocationStore(state, clock=clock, highwater=entry_log.highwater)
    try:
        yield Stores(meta, entry_log, revocations)
    finally:
        revocations.close()
        if clean:
            entry_log.close()
        else:  # a power cut: no clean-close record
            entry_log._meta = None
            entry_log.close()
        meta.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0 + 60)


def history_at_v3(state: Path, clock: FixedClock) -> None:
    """Lists 1..3 (v3 by delta, revoking cti 3) and four entries, closed cleanly."""
    with opened(state, clock) as s:
        s.revocations.apply(full_list(1, [cti(1)]))
        s.revocations.apply(full_list(2, [cti(1), cti(2)]))
        s.revocations.apply(delta_list(2, 3, [cti(3)]))
        for n in range(4):
            s.entry_log.append({"kind": "scan", "n": n})


@pytest.mark.parametrize("damage", ["zero", "truncated", "garbage", "missing", "older"])
def test_damaged_list_is_unknown_never_an_older_list_silently(
    tmp_path: Path, clock: FixedClock, damage: str
) -> None:
    snap = tmp_path / "revocations.snap"
    with opened(tmp_path, clock) as s:
        s.revocations.apply(full_list(1, [cti(1)]))
    older = snap.read_bytes()
    with opened(tmp_path, clock) as s:
        s.revocations.apply(full_list(2, [cti(1), cti(2)]))
    data = snap.read_bytes()
    if damage == "zero":
        snap.write_bytes(b"")
    elif damage == "truncated":
        snap.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        snap.write_bytes(b"not a list" * 20)
    elif damage == "missing":
        snap.unlink()
        (tmp_path / "revocations.snap.prev").unlink()
    else:
        snap.write_bytes(older)  # a valid, signed-off older copy: only the mark tells
    with opened(tmp_path, clock) as s:
        assert s.revocations.state == "unknown"
        status = s.revocations.status().to_json()
        assert status["state"] == "unknown" and status["high_water_version"] == 2
        assert any("older than version 2" in p for p in status["problems"])
    seen = read_recoveries(tmp_path)  # what the status commands show, read-only
    assert seen.revocations_mark() == 2 and seen.of("revocations")
    with opened(tmp_path, clock) as s:  # still reported after another restart
        assert s.revocations.state == "unknown"
        s.revocations.apply(full_list(2, [cti(1), cti(2)]))  # the centre's retained list
        assert s.revocations.state == "ok" and s.revocations.is_revoked(cti(2), "x", T0)
    assert read_recoveries(tmp_path).of("revocations") == []  # a fresh full list clears it


@pytest.mark.parametrize("damage", ["garbage", "missing"])
def test_lost_delta_journal_makes_the_list_unknown(
    tmp_path: Path, clock: FixedClock, damage: str
) -> None:
    history_at_v3(tmp_path, clock)
    journal = tmp_path / "revocations.journal"
    if damage == "missing":
        journal.unlink()
    else:
        journal.write_bytes(b"\x00" * 64)
    with opened(tmp_path, clock) as s:
        assert (s.revocations.version, s.revocations.state) == (2, "unknown")


def test_a_gate_that_never_had_a_list_is_unknown(tmp_path: Path, clock: FixedClock) -> None:
    with opened(tmp_path, clock) as s:
        assert s.revocations.version is None and s.revocations.state == "unknown"


def test_both_list_files_and_meta_gone_still_known_from_the_entry_log(
    tmp_path: Path, clock: FixedClock
) -> None:
    history_at_v3(tmp_path, clock)
    for name in ("revocations.snap", "revocations.snap.prev", "revocations.journal",
                 "meta.json"):
        (tmp_path / name).unlink()
    with opened(tmp_path, clock) as s:
        assert s.revocations.high_water == 3 and s.revocations.state == "unknown"
        assert any("meta.json had no high-water marks" in p
                   for p in s.entry_log.highwater.problems())  # type: ignore[union-attr]


@pytest.mark.parametrize("damage", ["zero", "missing", "rolled_back", "wal_lost"])
def test_entry_log_behind_its_mark_never_reuses_a_seq(
    tmp_path: Path, clock: FixedClock, damage: str
) -> None:
    db = tmp_path / "outbox.db"
    with opened(tmp_path, clock) as s:
        s.entry_log.append({"kind": "scan", "n": 0})
    backup = tmp_path / "backup.db"
    shutil.copy(db, backup)
    with opened(tmp_path, clock) as s:
        ids = {s.entry_log.append({"kind": "scan", "n": n}).seq: None for n in range(1, 5)}
    assert max(ids) == 5
    if damage == "zero":
        db.write_bytes(b"")
    elif damage == "missing":
        db.unlink()
    elif damage == "rolled_back":
        shutil.copy(backup, db)
    else:  # the last commits were only in the WAL, which is gone
        shutil.copy(backup, db)
        db.with_name("outbox.db-wal").unlink(missing_ok=True)
    with opened(tmp_path, clock) as s:
        rows = [e.event for e in s.entry_log.history()]
        recovered = [r for r in rows if r.get("alarm") == "entry_log_recovered"]
        assert len(recovered) == 1 and recovered[0]["seq"] > 5
        first_lost = 1 if damage in ("zero", "missing") else 2
        assert recovered[0]["lost"] == [first_lost, 5]
        new = s.entry_log.append({"kind": "scan", "n": "after"})
        assert new.seq > 5  # never a number the centre already has with another id
        status = s.entry_log.status().to_json()
        assert status["lost"] == [[first_lost, 5]] and status["problems"]
    assert read_recoveries(tmp_path).lost == [[first_lost, 5]]
    assert clear_recoveries(tmp_path) >= 1  # an operator has reported the loss
    assert read_recoveries(tmp_path).lost == [] and read_recoveries(tmp_path).reports == []


def crash_image(state: Path, dest: Path) -> Path:
    """The card as a power cut leaves it: every file copied while the stores are open."""
    shutil.copytree(state, dest, ignore=shutil.ignore_patterns("*.lock"))
    return dest


def test_a_power_cut_continues_the_sequence_without_a_gap(
    tmp_path: Path, clock: FixedClock
) -> None:
    with opened(tmp_path / "a", clock) as s:
        s.entry_log.append({"kind": "scan"})
        s.entry_log.append({"kind": "scan"})
        cut = crash_image(tmp_path / "a", tmp_path / "b")
    assert (cut / "outbox.db-wal").exists()
    with opened(cut, clock) as s:
        assert s.entry_log.append({"kind": "scan"}).seq == 3  # no gap, nothing to report
        assert s.entry_log.status().problems == ()


def test_a_wal_lost_after_a_power_cut_jumps_over_the_reservation(
    tmp_path: Path, clock: FixedClock
) -> None:
    with opened(tmp_path / "a", clock) as s:
        s.entry_log.append({"kind": "scan"})
        cut = crash_image(tmp_path / "a", tmp_path / "b")
    (cut / "outbox.db-wal").unlink()  # the rows of the last commits went with it
    with opened(cut, clock) as s:
        (row,) = [e.event for e in s.entry_log.history() if e.event.get("alarm")]
        assert row["alarm"] == "entry_log_recovered" and row["skipped"][1] >= 100
        assert s.entry_log.append({"kind": "scan"}).seq > row["skipped"][1]


def test_meta_json_behind_the_entry_log_is_reported(tmp_path: Path, clock: FixedClock) -> None:
    (tmp_path / "meta.json").parent.mkdir(exist_ok=True)
    with opened(tmp_path, clock) as s:
        s.revocations.apply(full_list(1, [cti(1)]))
    old_meta = (tmp_path / "meta.json").read_bytes()
    with opened(tmp_path, clock) as s:
        s.revocations.apply(full_list(2, [cti(2)]))
    (tmp_path / "meta.json").write_bytes(old_meta)  # an older copy restored
    with opened(tmp_path, clock) as s:
        assert s.revocations.high_water == 2 and s.revocations.state == "ok"
        assert any("meta.json is behind" in p
                   for p in s.entry_log.highwater.problems())  # type: ignore[union-attr]


def test_tinydb_files_carry_a_format_and_a_checksum(tmp_path: Path) -> None:
    meta = Meta(tmp_path)
    meta.set("time_floor", 5)
    meta.close()
    raw = json.loads((tmp_path / "meta.json").read_text())
    assert raw["_integrity"]["format"] == 1 and len(raw["_integrity"]["sha256"]) == 64
    raw["meta"]["1"]["v"] = 6  # parses fine, but was edited
    (tmp_path / "meta.json").write_text(json.dumps(raw))
    with pytest.raises(CorruptStateError, match="checksum"):
        AtomicJSONStorage(tmp_path / "meta.json")


def test_replay_key_is_committed_with_its_entry_row(tmp_path: Path, clock: FixedClock) -> None:
    with opened(tmp_path, clock, clean=False) as s:  # power cut right after the grant
        s.entry_log.append({"kind": "scan", "granted": True}, replay=("k1", T0 + 90))
    with opened(tmp_path, clock) as s:
        replays = LoggedReplays(s.entry_log)
        assert replays.seen("k1") and not replays.seen("k2")
        clock.advance(120)
        s.entry_log.maintain(clock.now(), clock.monotonic())  # pruned by the decision clock
        assert not replays.seen("k1")


def test_lost_replay_keys_fail_closed_for_codes_made_before_the_loss(
    tmp_path: Path, clock: FixedClock
) -> None:
    with opened(tmp_path, clock) as s:
        s.entry_log.append({"kind": "scan", "granted": True}, replay=("k1", clock.now() + 31))
    (tmp_path / "outbox.db").unlink()
    with opened(tmp_path, clock) as s:
        replays = LoggedReplays(s.entry_log)
        assert not replays.seen("k1")  # the key went with the database ...
        assert replays.refuses(clock.now() + 31)  # ... so its window is refused wholesale
        assert not replays.refuses(clock.now() + 200)  # codes made after the loss pass


def test_a_list_installed_without_the_marks_becomes_the_mark_at_the_next_start(
    tmp_path: Path, clock: FixedClock
) -> None:
    with RevocationStore(tmp_path, clock=clock) as store:  # e.g. a provisioning bundle
        store.apply(full_list(1, [cti(1)]))
    older = (tmp_path / "revocations.snap").read_bytes()
    with RevocationStore(tmp_path, clock=clock) as store:
        store.apply(full_list(2, [cti(1), cti(2)]))
    with opened(tmp_path, clock) as s:  # the daemon starts: v2 is what it has had
        assert s.revocations.state == "ok" and s.revocations.high_water == 2
    (tmp_path / "revocations.snap").write_bytes(older)
    with opened(tmp_path, clock) as s:
        assert s.revocations.state == "unknown"
