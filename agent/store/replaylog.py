"""Replay keys kept in the entry log's SQLite database (``replays`` table).

The replay key of a granted live code is written in the same transaction as the scan's
entry row (``EntryLog.append(event, replay=(key, until))``): one fsync per scan, and a
code granted before a power cut is refused after it, because its row and its key are
committed together. A lookup is one primary-key probe; expired keys are pruned by
``EntryLog.maintain`` with the decision clock, off the scan path. When the database
itself was lost, ``refuses(until)`` refuses every live code made before the recovery
(they expire within one window), so damage fails closed.

:class:`LoggedReplays` is the controller's ``ReplayPort`` over it (commands remember
their ids here too). Controller thread for writes; reads are serialised by the log.
"""

from __future__ import annotations

from agent.store.entrylog import EntryLog


class LoggedReplays:
    """``seen``/``remember`` backed by an :class:`EntryLog`; nothing held in memory."""

    def __init__(self, entry_log: EntryLog, *, memory_only: bool = False) -> None:
        """``memory_only``: remember in this process only (``gate-agent verify``)."""
        self._log = entry_log
        self._memory_only = memory_only
        self._local: dict[str, float] = {}

    def seen(self, key: str) -> bool:
        return key in self._local or self._log.replay_seen(key)

    def refuses(self, until: float) -> bool:
        """A live code whose window ends by ``until`` may have been used before the
        database was lost: refuse it (deny on doubt)."""
        return until <= self._log.replay_lost_until

    def remember(self, key: str, until: float) -> None:
        if self._memory_only:
            self._local[key] = max(until, self._local.get(key, until))
            return
        self._log.remember_replay(key, until)

    def problems(self) -> list[str]:
        """The entry log's recoveries: its replay keys went with it."""
        return self._log.problems()

    def close(self) -> None:
        """The entry log owns the connection; nothing to close here."""
