"""Entry log / outbox: ids and sequence numbers, pending/ack, retention, capacity, threads."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from agent.core.clock import FixedClock
from agent.core.errors import StateError
from agent.store import EntryLog
from agent.store.entrydb import DiskFloor

T0 = 1_790_000_000.0


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


def scan(n: int = 0) -> dict[str, object]:
    return {"kind": "scan", "granted": n % 2 == 0, "reason": "ok", "sub": f"rider-{n}"}


def test_append_assigns_id_and_gapless_seq_inside_the_record(
    tmp_path: Path, clock: FixedClock
) -> None:
    with EntryLog(tmp_path, clock=clock) as log:
        entries = [log.append(scan(n)) for n in range(5)]
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert len({e.id for e in entries}) == 5
    first = entries[0]
    assert len(first.id) == 32 and int(first.id, 16) >= 0
    assert first.event["id"] == first.id and first.event["seq"] == 1
    assert first.event["ts"] == "2026-09-21T14:13:20.000Z"
    assert first.event["sub"] == "rider-0"
    with EntryLog(tmp_path, clock=clock) as again:
        assert again.append(scan()).seq == 6
        assert [e.event for e in again.pending(limit=2)] == [entries[0].event, entries[1].event]


def test_pending_hands_out_in_order_after_a_seq_and_ack_removes(
    tmp_path: Path, clock: FixedClock
) -> None:
    with EntryLog(tmp_path, clock=clock) as log:
        for n in range(10):
            log.append(scan(n))
        first = log.pending(limit=4)
        assert [e.seq for e in first] == [1, 2, 3, 4]
        # in flight up to 4: the next batch starts after it, nothing read ahead
        assert [e.seq for e in log.pending(after_seq=4, limit=3)] == [5, 6, 7]
        assert log.ack([2, 1, 4, 4, 99]) == 3
        assert [e.seq for e in log.pending(limit=3)] == [3, 5, 6]
        assert log.backlog == 7
        assert log.ack([1]) == 0  # an ack repeated by the broker changes nothing
        status = log.status()
        assert (status.backlog, status.last_seq, status.entries) == (7, 10, 10)


def test_log_keeps_acked_entries_until_retention_then_prunes_only_acked(
    tmp_path: Path, clock: FixedClock
) -> None:
    with EntryLog(tmp_path, clock=clock, retention_days=1) as log:
        for n in range(6):
            log.append(scan(n))
        log.ack([1, 2, 3])
        assert [e.seq for e in log.history()] == [1, 2, 3, 4, 5, 6]
        assert log.prune(T0 + 3600) == 0  # within retention: kept as the local log
        assert log.prune(T0 + 2 * 86400, batch=2) == 3
        assert [e.seq for e in log.history()] == [4, 5, 6]  # pending are never pruned
        clock.advance(3 * 86400)
        log.ack([4, 5, 6])
        log.prune()
        assert log.append(scan()).seq == 7  # numbers never come back after a prune


def test_history_since_filters_by_event_time(tmp_path: Path, clock: FixedClock) -> None:
    with EntryLog(tmp_path, clock=clock) as log:
        log.append(scan(), at=T0 - 86400)  # the event's own instant, given as a number
        log.append(scan(), at=T0 + 86400)
        log.append(scan())  # no at: now, 2026-09-21T14:13:20Z
        assert len(list(log.history())) == 3
        since = [(e.ts, e.event["ts"]) for e in log.history(since=T0 - 3600)]
        assert since == [(T0 + 86400, "2026-09-22T14:13:20.000Z"),
                         (T0, "2026-09-21T14:13:20.000Z")]


def test_an_event_with_its_own_ts_string_needs_its_instant(
    tmp_path: Path, clock: FixedClock
) -> None:
    """The log never parses a time back out of a record: a ``ts`` without ``at`` is
    refused with what to pass, and nothing is written."""
    with EntryLog(tmp_path, clock=clock) as log:
        with pytest.raises(ValueError, match="needs at="):
            log.append({**scan(), "ts": "2026-09-20T10:00:00Z"})
        assert log.backlog == 0 and list(log.history()) == []
        entry = log.append({**scan(), "ts": "2026-09-20T10:00:00Z"}, at=T0 - 1)
        assert (entry.ts, entry.event["ts"]) == (T0 - 1, "2026-09-20T10:00:00Z")


def test_full_outbox_alarms_and_keeps_recording(
    tmp_path: Path, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    with EntryLog(tmp_path, clock=clock, capacity=3) as log:
        for n in range(3):
            log.append(scan(n))
        assert log.full
        log.append(scan(4))  # still recorded: a lost entry is worse than disk use
        assert log.status().to_json() | {"backlog": 4, "full": True} == log.status().to_json()
        assert any("outbox full" in r.message for r in caplog.records
                   if r.levelno == logging.WARNING)
        log.ack([1, 2])
        assert not log.full


def test_disk_floor_refuses_to_record(tmp_path: Path, clock: FixedClock) -> None:
    with EntryLog(tmp_path, clock=clock, min_free_bytes=1 << 62) as log:
        with pytest.raises(StateError, match="scans are denied"):
            log.append(scan())
        assert log.status().last_seq == 0


def test_disk_floor_refuses_within_a_second_and_at_every_append_below_it(
    tmp_path: Path, clock: FixedClock
) -> None:
    floor = DiskFloor(tmp_path, 0, clock)
    floor.check()
    floor.min_free_bytes = 1 << 62  # the disk "fills up" just after an append
    clock.advance(1.0)
    for _ in range(3):  # refused, and asked again each time while below the floor
        with pytest.raises(StateError, match="free disk space"):
            floor.check()
    floor.min_free_bytes = 0  # space freed: the next append is recorded at once
    floor.check()


def test_status_counts_rows_as_a_reader_of_the_file_does(
    tmp_path: Path, clock: FixedClock
) -> None:
    with EntryLog(tmp_path, clock=clock, retention_days=1) as log:
        for n in range(5):
            log.append(scan(n))
        log.ack([1, 2, 3])
        clock.advance(2 * 86400)
        assert log.prune() == 3
        log.append(scan())
        with EntryLog(tmp_path, read_only=True) as reader:
            assert log.status().entries == reader.status().entries == 3


def test_status_reports_backlog_age_and_disk(tmp_path: Path, clock: FixedClock) -> None:
    with EntryLog(tmp_path, clock=clock, capacity=1000) as log:
        empty = log.status().to_json()
        assert empty | {"backlog": 0, "oldest_age_s": None, "full": False} == empty
        log.append(scan())
        clock.advance(90)
        log.append(scan())
        status = log.status()
        assert status.oldest_age_s == 90.0
        assert status.disk_bytes > 0
        assert status.capacity == 1000


def test_controller_and_sync_threads_share_the_log(tmp_path: Path, clock: FixedClock) -> None:
    """Appends on one thread while another drains: every seq acked once, in order."""
    total = 400
    with EntryLog(tmp_path, clock=clock) as log:
        done = threading.Event()
        acked: list[int] = []

        def drain() -> None:
            while not (done.is_set() and log.backlog == 0):
                batch = log.pending(limit=25)
                log.ack(e.seq for e in batch)
                acked.extend(e.seq for e in batch)
                if not batch:
                    done.wait(0.001)

        worker = threading.Thread(target=drain, name="test-sync")
        worker.start()
        for n in range(total):
            log.append(scan(n))
        done.set()
        worker.join(timeout=30)
        assert not worker.is_alive()
        assert acked == list(range(1, total + 1))


def test_read_only_log_reads_and_missing_log_is_a_clear_error(
    tmp_path: Path, clock: FixedClock
) -> None:
    with pytest.raises(StateError, match="no entry log"):
        EntryLog(tmp_path, read_only=True)
    with EntryLog(tmp_path, clock=clock) as log:
        log.append(scan())
        reader = EntryLog(tmp_path, clock=clock, read_only=True)
        assert [e.seq for e in reader.history()] == [1]
        with pytest.raises(StateError, match="read-only"):
            reader.append(scan())
        reader.close()


def test_appends_stay_fully_synchronous_after_an_acknowledgement(tmp_path: Path) -> None:
    """Acks skip their own fsync (a lost ack only resends); appends must never."""
    log = EntryLog(tmp_path)
    try:
        first = log.append({"kind": "scan"})
        assert log.ack([first.seq]) == 1
        log.append({"kind": "scan"})
        assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert log.backlog == 1
    finally:
        log.close()


def test_appends_leave_the_wal_checkpoint_to_the_checkpointer(
    tmp_path: Path, clock: FixedClock
) -> None:
    """No append copies the WAL into the database (SQLite's default did it inside every
    ~150th commit, before the door opened); ``checkpoint`` does, from its own connection
    while the log stays open, and every row is still there after."""
    wal = tmp_path / "outbox.db-wal"
    sizes = []
    with EntryLog(tmp_path, clock=clock) as log:
        for n in range(500):  # ~4 pages a row: twice SQLite's default of 1,000 pages
            log.append(scan(n))
            sizes.append(wal.stat().st_size)
        # The WAL only grew, to twice the size at which SQLite's default checkpoint in
        # the committing append would have started it over (it then stays at ~4 MB).
        assert sizes[-1] > 2 * 1000 * 4096
        assert log.checkpoint() == 0  # all of it copied (no reader holds frames)
        log.append(scan(500))
        assert [e.seq for e in log.pending(limit=1000)] == list(range(1, 502))
    with EntryLog(tmp_path, clock=clock) as again:
        assert again.backlog == 501
