"""The entry log and outbox: every decision, durable before the door moves.

SQLite from the standard library, WAL mode, ``synchronous=FULL``: an append returns
only after its commit is fsynced (kill test: no acknowledged row lost). Each row gets
a UUID4 hex ``id`` and a per-gate ``seq`` (1, 2, 3, ... with no holes, assigned in the
same transaction as the insert; AUTOINCREMENT so pruning never lets a number return).

Rows are pending until the sync layer reports the broker's acknowledgement (``ack``);
acknowledged rows stay as the local entry log for ``retention_days`` and ``prune``
removes older ones. Pending rows are never pruned and never dropped.

Full policy (``capacity`` pending rows): keep recording and raise an alarm (status
``full``, a log line), because a lost entry is worse than disk use; only when free disk
falls below ``min_free_bytes`` (``entrydb.DiskFloor``) does ``append`` raise
``StateError`` so the controller denies (an entry that cannot be recorded must not open
the door).

Threads: one connection guarded by one lock, so the controller (append) and the sync
worker (pending/ack) can both call it; each call is one short transaction.

Integrity (``meta=``, the daemon's ``Meta``): the log keeps high-water marks in its own
``info`` table and in ``meta.json`` (:mod:`agent.store.highwater`). A database that is
empty, missing, replaced or rolled back is found at open against the other copy; the
sequence then continues above every number the gate may have used (``seqguard``), an
``entry_log_recovered`` row says what was lost, and the lost range stays in ``status``
until cleared. The replay keys of granted live codes are rows of the same database,
written in the scan's own transaction (one fsync per scan, see ``append(replay=)``).

Opening the file (schema, WAL, integrity check, a corrupt file moved aside) is
:mod:`agent.store.entrydb`; the values the log returns are :mod:`agent.store.entries`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from agent.core.clock import Clock, SystemClock
from agent.core.errors import StateError
from agent.core.timefmt import format_instant
from agent.store.entries import Entry, OutboxStatus, StoredEvent, entry_from_row
from agent.store.entrydb import Checkpointer, DiskFloor, connect_read_only, open_or_recover
from agent.store.files import ensure_dir
from agent.store.highwater import HighWater, MarkCopy
from agent.store.logintegrity import CLEAN_KEY, REMEMBER, LogIntegrity

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.db"
DEFAULT_MIN_FREE_BYTES = 64 * 1024 * 1024
_PAGE = 1000

class EntryLog(LogIntegrity):
    """Durable, ordered, acknowledged-by-the-broker log of every gate event."""

    def __init__(
        self,
        state_dir: Path,
        *,
        clock: Clock | None = None,
        capacity: int = 200_000,
        retention_days: float = 90,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        read_only: bool = False,
        meta: MarkCopy | None = None,
        replay_guard_s: float = 36.0,
    ) -> None:
        self.path = Path(state_dir) / OUTBOX_FILE
        self.capacity = capacity
        self.retention_s = retention_days * 86400.0
        self._clock = clock or SystemClock()
        self._read_only = read_only
        self._lock = threading.RLock()
        self._problems: list[str] = []
        self._full = False
        self._meta = meta
        self.highwater: HighWater | None = None
        self._replaced: str | None = None  # why the database file was replaced at open
        self._maintained: float | None = None
        self._wal_at_open: bool | None = None  # a WAL left by the last run (crash) or not
        self.replay_lost_until = 0.0  # live codes with replay_until <= this are refused
        self._checkpointer = Checkpointer(self.path)
        self._room = DiskFloor(self.path.parent, min_free_bytes, self._clock)
        if read_only:
            if not self.path.is_file():
                raise StateError(
                    f"no entry log at {self.path}: the gate has not recorded anything yet "
                    "(or [state] dir points elsewhere)"
                )
            self._conn = connect_read_only(self.path)
        else:
            ensure_dir(self.path.parent)
            self._wal_at_open = self.path.with_name(self.path.name + "-wal").exists()
            self._conn, self._replaced = open_or_recover(self.path, self._clock)
        self._backlog = self._count_pending()
        self._full = self._backlog >= capacity
        # The writer's own row count: its status() never scans the table under the lock.
        self._rows = 0 if read_only else self._count_rows()
        if read_only:
            self.replay_lost_until = float(self.info("replay_lost_until") or 0.0)
        else:
            self._guard(replay_guard_s)

    # ---- controller side -----------------------------------------------------------

    def append(self, event: dict[str, Any], replay: tuple[str, float] | None = None, *,
               at: float | None = None) -> Entry:
        """Record ``event`` durably; returns only after the commit is on disk.

        ``at``: the event's instant in Unix seconds (the recorder passes the decision
        clock's), kept as the row's time for ``--since`` and prune and, when the event has
        no ``"ts"``, written into it; without ``at`` it is the log's clock now. An event
        that brings its own ``"ts"`` must bring ``at`` too: the log never parses a time
        back out of the record. ``replay`` = (key, until): a granted live code's replay
        key, written in the same transaction as its row (one fsync for both; the door
        opens after it).
        """
        if self._read_only:
            raise StateError("the entry log was opened read-only")
        if at is None and "ts" in event:
            raise ValueError(
                "an event with its own 'ts' needs at= (its instant in Unix seconds): the "
                "entry log does not parse times back out of records")
        ts = self._clock.now() if at is None else at
        entry_id = uuid.uuid4().hex
        with self._lock:
            self._room.check()
            self._reserve(self._last_seq() + 1)
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                row = self._conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'entries'"
                ).fetchone()
                seq = (row[0] if row else 0) + 1
                if replay is not None:
                    self._conn.execute(REMEMBER, replay)
                record: dict[str, Any] = {"id": entry_id, "seq": seq}
                record.update((k, v) for k, v in event.items() if k not in ("id", "seq"))
                record.setdefault("ts", format_instant(ts))
                text = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
                self._conn.execute(
                    "INSERT INTO entries(seq, id, ts, event) VALUES (?, ?, ?, ?)",
                    (seq, entry_id, ts, text),
                )
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise StateError(
                    f"cannot record the entry in {self.path}: {exc}: the scan is denied; "
                    "check the disk and `gate-agent outbox status`"
                ) from exc
            self._backlog += 1
            self._rows += 1
            self._note_capacity()
        return Entry(seq, entry_id, ts, record)

    def _note_capacity(self) -> None:
        full = self._backlog >= self.capacity
        if full and not self._full:
            log.warning(
                "outbox full: %s events wait for the centre (capacity %s); still recording "
                "while disk allows, check the broker connection",
                self._backlog, self.capacity,
            )
        elif self._full and not full:
            log.info("outbox below capacity again: %s events pending", self._backlog)
        self._full = full

    # ---- sync side -----------------------------------------------------------------

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[Entry]:
        """Unacknowledged entries with ``seq > after_seq``, in order (read fresh each call)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, id, ts, event, acked_at FROM entries "
                "WHERE acked_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [entry_from_row(row) for row in rows]

    def pending_payloads(self, after_seq: int = 0, limit: int = 100) -> list[StoredEvent]:
        """Like :meth:`pending`, with each event's stored JSON as bytes (the uplink's read)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, id, CAST(event AS BLOB) FROM entries "
                "WHERE acked_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [StoredEvent(int(seq), str(entry_id), bytes(data)) for seq, entry_id, data in rows]

    def ack(self, seqs: Iterable[int]) -> int:
        """Mark entries acknowledged by the broker; returns how many were pending.

        Committed without its own fsync (``synchronous=NORMAL`` for this transaction; the
        next append's fsync carries it): an acknowledgement lost to a power cut only means
        the event is sent once more under the same id, which the centre deduplicates,
        while an fsync per acknowledgement would cap the drain at the card's fsync rate.
        """
        wanted = sorted(set(seqs))
        if not wanted:
            return 0
        now = self._clock.now()
        changed = 0
        with self._lock:
            self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    cursor = self._conn.execute(
                        f"UPDATE entries SET acked_at = ? "  # noqa: S608 - only placeholders
                        f"WHERE acked_at IS NULL AND seq IN ({marks})",
                        (now, *chunk),
                    )
                    changed += cursor.rowcount
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise StateError(f"cannot mark entries sent in {self.path}: {exc}") from exc
            finally:
                self._conn.execute("PRAGMA synchronous=FULL")  # appends stay durable
            self._backlog -= changed
            self._note_capacity()
        return changed

    def requeue(self, first: int, last: int) -> tuple[int, int]:
        """Make acknowledged rows ``first..last`` pending again, so they are sent again.

        For the centre's ``resend`` command: events a broker PUBACKed but lost (a crash
        before delivery) show as a seq gap at the centre. Returns (rows made pending,
        rows of the range still kept here, pending or not); pruned rows cannot return.
        """
        if self._read_only:
            raise StateError("the entry log was opened read-only")
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                kept = self._conn.execute(
                    "SELECT count(*) FROM entries WHERE seq BETWEEN ? AND ?", (first, last)
                ).fetchone()[0]
                changed = self._conn.execute(
                    "UPDATE entries SET acked_at = NULL "
                    "WHERE acked_at IS NOT NULL AND seq BETWEEN ? AND ?",
                    (first, last),
                ).rowcount
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise StateError(f"cannot queue entries again in {self.path}: {exc}") from exc
            self._backlog += changed
            self._note_capacity()
        return changed, int(kept)

    # ---- housekeeping and reading --------------------------------------------------

    def prune(self, now: float | None = None, batch: int = 2000) -> int:
        """Delete acknowledged entries older than the retention, a batch per lock hold."""
        cutoff = (self._clock.now() if now is None else now) - self.retention_s
        removed = 0
        while True:
            with self._lock:
                cursor = self._conn.execute(
                    "DELETE FROM entries WHERE seq IN (SELECT seq FROM entries "
                    "WHERE acked_at IS NOT NULL AND ts < ? ORDER BY seq LIMIT ?)",
                    (cutoff, batch),
                )
                removed += cursor.rowcount
                self._rows -= cursor.rowcount
            if cursor.rowcount < batch:
                break
        if removed:
            log.info("pruned %s acknowledged entries older than the retention", removed)
        return removed

    def history(self, since: float | None = None) -> Iterator[Entry]:
        """Every kept entry (pending and acknowledged) from ``since``, in seq order."""
        after = 0
        lower = float("-inf") if since is None else since
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT seq, id, ts, event, acked_at FROM entries "
                    "WHERE seq > ? AND ts >= ? ORDER BY seq LIMIT ?",
                    (after, lower, _PAGE),
                ).fetchall()
            yield from (entry_from_row(row) for row in rows)
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    @property
    def min_free_bytes(self) -> int:
        return self._room.min_free_bytes

    @property
    def backlog(self) -> int:
        return self._backlog

    @property
    def full(self) -> bool:
        return self._full

    def status(self, now: float | None = None) -> OutboxStatus:
        at = self._clock.now() if now is None else now
        with self._lock:
            oldest = self._conn.execute(
                "SELECT ts FROM entries WHERE acked_at IS NULL ORDER BY seq LIMIT 1"
            ).fetchone()
            row = self._conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'entries'"
            ).fetchone()
            # A reader counts (another process writes); the writer keeps its own count, so
            # a status request never holds the lock a scan's commit waits for over a scan
            # of the table (tens of ms at the retention's 100k+ rows).
            total = self._count_rows() if self._read_only else self._rows
        oldest_ts = None if oldest is None else float(oldest[0])
        return OutboxStatus(
            backlog=self._backlog,
            oldest_pending_ts=oldest_ts,
            oldest_age_s=None if oldest_ts is None else max(0.0, at - oldest_ts),
            disk_bytes=self._disk_bytes(),
            capacity=self.capacity,
            full=self._full,
            last_seq=int(row[0]) if row else 0,
            entries=int(total),
            problems=tuple(self._problems),
            lost=tuple((r[0], r[1]) for r in self.lost_ranges()),
        )

    def problems(self) -> list[str]:
        return list(self._problems)

    def close(self) -> None:
        """Close; a writer records its last seq in meta.json (a clean stop, no gap next)."""
        with self._lock:
            if self._meta is not None and not self._read_only:
                try:
                    last = self._last_seq()
                    if self.highwater is not None:
                        self.highwater.raise_to(entry_seq_seen=last)
                    self._meta.set(CLEAN_KEY, last)
                except Exception:
                    log.exception("could not record the entry log's clean close")
            self._checkpointer.close()
            self._conn.close()

    def checkpoint(self) -> int:
        """Copy the WAL into the database off the append path (the daemon's supervisor
        calls it; see ``entrydb.Checkpointer``); the frames left for the next run."""
        if self._read_only:
            return 0
        return self._checkpointer.run()

    def __enter__(self) -> EntryLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count_pending(self) -> int:
        with self._lock:
            return int(
                self._conn.execute(
                    "SELECT count(*) FROM entries WHERE acked_at IS NULL"
                ).fetchone()[0]
            )

    def _count_rows(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM entries").fetchone()[0])

    def _disk_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += self.path.with_name(self.path.name + suffix).stat().st_size
        return total
