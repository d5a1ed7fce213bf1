"""The recorder: writes entry records durably, the only path into the entry log.

An append that fails (disk full, database broken) is counted and raised as the
``entry_log`` alarm, and returns None so the caller keeps the door locked; the next
append that works clears the alarm. After a row is written the sync service is told
there is something to upload.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from agent.gate.record import EntryRecord

log = logging.getLogger(__name__)


class EntryLogPort(Protocol):
    def append(self, event: dict[str, Any], replay: tuple[str, float] | None = None, *,
               at: float | None = None) -> Any:
        ...


class Uploader(Protocol):
    def notify(self) -> None: ...


class Recorder:
    """Entry records for one gate -> entry log rows (controller thread only)."""

    def __init__(self, entry_log: EntryLogPort, site: str, gate: str,
                 alarms: dict[str, str]) -> None:
        self._log = entry_log
        self._site = site
        self._gate = gate
        self._alarms = alarms
        self.uploader: Uploader | None = None
        self.failures = 0

    def record(self, entry: EntryRecord, *, notify: bool = True,
               replay: tuple[str, float] | None = None) -> Any:
        """Durable append; the stored entry (with ``seq``), or None when it failed.
        ``replay``: a grant's replay key, committed in the same transaction as its row."""
        try:
            event = entry.to_event(self._site, self._gate)
            # The record's instant as a number: the log never parses back its "ts".
            stored = self._log.append(event, replay=replay, at=entry.at)
        except Exception as exc:
            self.failures += 1
            self._alarms["entry_log"] = f"{type(exc).__name__}: {exc}"
            log.critical("entry log append failed (%s): door stays locked", exc)
            return None
        self._alarms.pop("entry_log", None)
        if notify:
            self.notify()
        return stored

    def notify(self) -> None:
        if self.uploader is not None:
            self.uploader.notify()
