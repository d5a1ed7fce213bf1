"""The entry log's integrity half: high-water marks, recovery at open, replay keys.

A mixin of :class:`agent.store.entrylog.EntryLog` (split out to keep each module
small): the ``info`` table as the second copy of the high-water marks, what happens at
open when the database is behind them (``agent.store.seqguard``), the seq reservation,
and the ``replays`` table that holds granted live codes' keys with their entry rows.
Uses only the log's connection and lock; see entrylog's docstring for the rules.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from agent.core.clock import Clock
from agent.core.errors import StateError
from agent.store.highwater import HighWater, MarkCopy
from agent.store.seqguard import SEQ_BLOCK, SeqPlan, plan_seq

CLEAN_KEY = "entry_log_clean"  # in meta.json: the last seq, written at a clean close
MAINTAIN_EVERY_S = 10.0
REMEMBER = ("INSERT INTO replays(k, until) VALUES (?, ?) "
            "ON CONFLICT(k) DO UPDATE SET until = max(until, excluded.until)")


class LogIntegrity:
    """Needs ``path``, ``_conn``, ``_lock``, ``_clock``, ``_read_only``, ``_problems``,
    ``_meta``, ``_replaced`` and ``append`` from the log."""

    path: Path
    _conn: sqlite3.Connection
    _lock: threading.RLock
    _clock: Clock
    _read_only: bool
    _problems: list[str]
    _meta: MarkCopy | None
    _replaced: str | None
    _maintained: float | None
    _wal_at_open: bool | None
    highwater: HighWater | None
    replay_lost_until: float

    def append(self, event: dict[str, Any], replay: tuple[str, float] | None = None, *,
               at: float | None = None) -> Any:
        raise NotImplementedError

    def _guard(self, replay_guard_s: float) -> None:
        """Compare the database with the marks kept elsewhere; recover what is behind."""
        meta = self._meta
        if meta is None:
            if self._replaced:  # no other copy: the best this log can do is say so
                self._recovered(SeqPlan(self._last_seq() + 1), self._replaced)
            return
        self.highwater = hw = HighWater({"meta.json": meta, "outbox.db": InfoCopy(self)})
        clean = meta.get(CLEAN_KEY)
        meta.set(CLEAN_KEY, None)  # until the next clean close
        wal_lost = clean is None and self._wal_at_open is False
        plan = plan_seq(
            self._last_seq(), int(hw.get("entry_seq") or 0), int(hw.get("entry_seq_seen") or 0),
            clean if isinstance(clean, int) and not isinstance(clean, bool) else None,
            damaged=bool(self._replaced) or wal_lost,
        )
        self.replay_lost_until = float(self.info("replay_lost_until") or 0.0)
        if plan.recovered or self._replaced:
            why = self._replaced or (
                f"the WAL of {self.path} vanished after a stop that was not clean" if wal_lost
                else f"entry log {self.path} is behind the gate's high-water mark")
            # The replay keys were rows of the lost database: refuse live codes made
            # before now (they expire within one window), deny on doubt.
            lost_until = max(hw.get("replay_horizon") or 0.0,
                             (hw.get("time_floor") or 0.0) + replay_guard_s,
                             self._clock.now() + replay_guard_s)
            self.replay_lost_until = max(self.replay_lost_until, lost_until)
            self.set_info("replay_lost_until", self.replay_lost_until)
            self._recovered(plan, why)

    def _recovered(self, plan: SeqPlan, why: str) -> None:
        lost = plan.lost
        detail = why
        if lost:
            detail += f"; seq {lost[0]}-{lost[1]} are lost"
            ranges = [*self.lost_ranges(), list(lost)]
            self.set_info("lost_ranges", ranges)
        if plan.skipped:
            detail += (f"; seq {plan.skipped[0]}-{plan.skipped[1]} were reserved and are "
                       "skipped, so no number can come back")
        detail += f"; the sequence continues at {plan.next_seq}"
        self._problems.append(detail)
        if self.highwater is not None:
            self.highwater.record("entry_log", detail)
        event: dict[str, Any] = {"kind": "alarm", "alarm": "entry_log_recovered",
                                 "detail": detail, "lost": list(lost) if lost else None}
        if plan.skipped:
            event["skipped"] = list(plan.skipped)
        self._append_at(plan.next_seq, event)

    def _append_at(self, seq: int, event: dict[str, Any]) -> None:
        with self._lock:
            if seq > self._last_seq() + 1:  # jump: AUTOINCREMENT follows the highest seq
                self._conn.execute(
                    "UPDATE sqlite_sequence SET seq = ? WHERE name = 'entries'", (seq - 1,))
                if not self._conn.execute(
                    "SELECT 1 FROM sqlite_sequence WHERE name = 'entries'"
                ).fetchone():
                    self._conn.execute(
                        "INSERT INTO sqlite_sequence(name, seq) VALUES ('entries', ?)",
                        (seq - 1,))
        self.append(event)

    def _last_seq(self) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
        return int(row[0]) if row else 0

    # ---- the info table (the second copy of the high-water marks)

    def info(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._conn.execute("SELECT v FROM info WHERE k = ?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except (TypeError, ValueError):
            return default

    def set_info(self, key: str, value: Any) -> None:
        """Store a JSON value (a no-op when unchanged: every write here is an fsync)."""
        text = json.dumps(value, separators=(",", ":"))
        with self._lock:
            row = self._conn.execute("SELECT v FROM info WHERE k = ?", (key,)).fetchone()
        if row is not None and row[0] == text:
            return
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO info(k, v) VALUES (?, ?)", (key, text))

    def lost_ranges(self) -> list[list[int]]:
        raw = self.info("lost_ranges", [])
        return [list(map(int, r)) for r in raw if isinstance(r, list) and len(r) == 2] \
            if isinstance(raw, list) else []

    def clear_recoveries(self) -> None:
        """Operator: the lost ranges were seen and reported (``gate-agent state clear``)."""
        self.set_info("lost_ranges", [])
        self._problems.clear()

    def _reserve(self, seq: int) -> None:
        """Keep ``seq`` under the reservation held in the other copy (rarely writes)."""
        hw = self.highwater
        if hw is not None and seq > (hw.get("entry_seq") or 0):
            hw.raise_to(entry_seq=seq + SEQ_BLOCK)

    # ---- replay keys (same database, so a granted code and its key share one commit)

    def replay_seen(self, key: str) -> bool:
        """Indexed lookup; a stored key counts even past its ``until`` (deny on doubt)."""
        with self._lock:
            return self._conn.execute(
                "SELECT 1 FROM replays WHERE k = ?", (key,)).fetchone() is not None

    def remember_replay(self, key: str, until: float) -> None:
        """Remember a key on its own (commands; ``verify``), committed durably."""
        if self._read_only:
            raise StateError("the entry log was opened read-only")
        with self._lock:
            try:
                self._conn.execute(REMEMBER, (key, until))
            except sqlite3.Error as exc:
                raise StateError(f"cannot remember a replay key in {self.path}: {exc}") from exc

    def prune_replays(self, now: float, batch: int = 500) -> int:
        """Forget keys whose window ended before ``now`` (the decision clock's time)."""
        with self._lock:
            return self._conn.execute(
                "DELETE FROM replays WHERE k IN (SELECT k FROM replays WHERE until < ? "
                "LIMIT ?)", (now, batch)).rowcount

    def maintain(self, now: float, mono: float) -> None:
        """Off the scan path, at most every 10 s: prune expired replay keys, refresh
        the marks kept in the other copy (last seq written, replay horizon, reservation)."""
        if self._read_only or (self._maintained is not None
                               and mono - self._maintained < MAINTAIN_EVERY_S):
            return
        self._maintained = mono
        self.prune_replays(now)
        hw = self.highwater
        if hw is None:
            return
        last = self._last_seq()
        with self._lock:
            row = self._conn.execute("SELECT max(until) FROM replays").fetchone()
        reserved = hw.get("entry_seq") or 0
        hw.raise_to(entry_seq_seen=last, replay_horizon=row[0] if row else None,
                    entry_seq=last + SEQ_BLOCK if reserved - last < SEQ_BLOCK // 2 else None)


class InfoCopy:
    """The entry log's info table as a ``MarkCopy`` for the high-water marks."""

    def __init__(self, entry_log: LogIntegrity) -> None:
        self._log = entry_log

    def get(self, key: str, default: Any = None) -> Any:
        return self._log.info(key, default)

    def set(self, key: str, value: Any) -> None:
        self._log.set_info(key, value)
