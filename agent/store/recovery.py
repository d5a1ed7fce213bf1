"""Recovery reports for people: read them without writing, clear them on purpose.

The daemon records every recovery and downgrade it finds (agent.store.highwater) in
meta.json and in the entry log database. ``revocations status``, ``outbox status`` and
``gate-agent check`` read them here, read-only, while the daemon runs; ``gate-agent
state clear`` (daemon stopped) forgets them once an operator has dealt with them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.core.errors import StateError
from agent.store.entrylog import OUTBOX_FILE, EntryLog
from agent.store.files import WriterLock
from agent.store.highwater import MarkCopy, read_marks
from agent.store.logintegrity import InfoCopy
from agent.store.meta import META_FILE, Meta
from agent.store.revocations import LOCK


@dataclass(frozen=True)
class Recoveries:
    marks: dict[str, float] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)
    lost: list[list[int]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # a copy that could not be read

    def of(self, what: str) -> list[str]:
        return [str(r["detail"]) for r in self.reports if r.get("what") == what]

    def revocations_mark(self) -> int | None:
        mark = self.marks.get("revocations_version")
        return None if mark is None else int(mark)


def read_recoveries(state_dir: Path) -> Recoveries:
    """Merged marks and reports of both copies; creates and writes nothing."""
    copies: dict[str, MarkCopy] = {}
    unreadable: list[str] = []
    lost: list[list[int]] = []
    closers: list[Any] = []
    try:
        if (state_dir / META_FILE).is_file():
            try:
                meta = Meta(state_dir, read_only=True)
                closers.append(meta)
                copies["meta.json"] = meta
            except StateError as exc:
                unreadable.append(f"{META_FILE}: {exc}")
        if (state_dir / OUTBOX_FILE).is_file():
            try:
                entry_log = EntryLog(state_dir, read_only=True)
                closers.append(entry_log)
                copies["outbox.db"] = InfoCopy(entry_log)
                lost = entry_log.lost_ranges()
            except StateError as exc:
                unreadable.append(f"{OUTBOX_FILE}: {exc}")
        marks, reports = read_marks(copies)
    finally:
        for item in closers:
            with contextlib.suppress(Exception):
                item.close()
    return Recoveries(marks, reports, lost, unreadable)


def clear_recoveries(state_dir: Path) -> int:
    """Forget every recovery report and lost range (the daemon must be stopped)."""
    lock = WriterLock(state_dir / LOCK, "the gate state")
    try:
        meta = Meta(state_dir)
        entry_log = EntryLog(state_dir, meta=meta)
        try:
            hw = entry_log.highwater
            assert hw is not None  # a log opened with meta keeps the marks
            cleared = hw.clear()
            cleared += len(entry_log.lost_ranges())
            entry_log.clear_recoveries()
        finally:
            entry_log.close()
            meta.close()
    finally:
        lock.release()
    return cleared
