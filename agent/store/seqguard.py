"""What the entry log does at open when its database is behind what the gate had.

Pure: given the database's last seq and the high-water marks kept elsewhere, say where
the sequence continues and which numbers were lost or skipped. A seq is never reused:
the centre would take a reused number with another id for a cloned card.

- ``lost``: numbers known written (``entry_seq_seen``, or the seq recorded at the last
  clean stop) that the database no longer has: a rolled-back, replaced or empty log.
- ``skipped``: numbers reserved but perhaps never written, after a stop that was not
  clean (a power cut): the sequence continues above the reservation, so a lost WAL
  cannot make a number come back. The centre sees the gap explained by the row.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQ_BLOCK = 100  # seq numbers reserved at a time in the other copy


@dataclass(frozen=True)
class SeqPlan:
    next_seq: int
    lost: tuple[int, int] | None = None
    skipped: tuple[int, int] | None = None


def plan_seq(db_last: int, reserved: int, seen: int, clean: int | None) -> SeqPlan:
    """Where the sequence goes on after an open (see the module docstring)."""
    known = max(seen, clean or 0)
    lost = (db_last + 1, known) if known > db_last else None
    top = max(db_last, known)
    if clean is None and reserved > top:
        return SeqPlan(reserved + 1, lost, (top + 1, reserved))
    return SeqPlan(top + 1, lost, None)
