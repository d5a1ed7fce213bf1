"""What the entry log hands out: recorded entries, the uplink's stored payloads, status.

Plain frozen values: the sync layer and the CLI read them without the log's lock or
connection. Made by :mod:`agent.store.entrylog`; imported by whatever reads the log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Entry:
    """One recorded event; ``event`` is the JSON record and includes ``id`` and ``seq``."""

    seq: int
    id: str
    ts: float
    event: dict[str, Any]
    acked_at: float | None = None


@dataclass(frozen=True)
class StoredEvent:
    """An outbox row as the uplink sends it: the event's JSON bytes exactly as recorded
    (they already hold ``id`` and ``seq``), neither decoded nor encoded again."""

    seq: int
    id: str
    payload: bytes


@dataclass(frozen=True)
class OutboxStatus:
    backlog: int  # events waiting for the broker's acknowledgement
    oldest_pending_ts: float | None
    oldest_age_s: float | None
    disk_bytes: int  # database + WAL + shared-memory files
    capacity: int
    full: bool
    last_seq: int
    entries: int  # rows kept, pending and acknowledged
    problems: tuple[str, ...] = field(default=())
    lost: tuple[tuple[int, int], ...] = field(default=())  # seq ranges this log lost

    def to_json(self) -> dict[str, Any]:
        return {
            "backlog": self.backlog,
            "oldest_age_s": None if self.oldest_age_s is None else round(self.oldest_age_s, 3),
            "oldest_pending_ts": self.oldest_pending_ts,
            "disk_bytes": self.disk_bytes,
            "capacity": self.capacity,
            "full": self.full,
            "last_seq": self.last_seq,
            "entries": self.entries,
            "problems": list(self.problems),
            "lost": [list(r) for r in self.lost],
        }



def entry_from_row(row: tuple[Any, ...]) -> Entry:
    """An ``entries`` row (seq, id, ts, event, acked_at) as an :class:`Entry`."""
    seq, entry_id, ts, text, acked_at = row
    return Entry(int(seq), str(entry_id), float(ts), json.loads(text), acked_at)
