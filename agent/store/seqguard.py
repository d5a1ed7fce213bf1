"""What the entry log does at open when its database is behind what the gate had.

Pure: given the database's last seq and the high-water marks kept elsewhere, say where
the sequence continues and which numbers were lost or skipped. A seq is never reused
where there is evidence of loss: the centre would take a reused number with another id
for a cloned card.

- ``lost``: numbers known written (``entry_seq_seen``, refreshed every few seconds, or
  the seq recorded at the last clean stop) that the database no longer has: a
  rolled-back, replaced or empty log.
- ``skipped``: after a loss following a stop that was not clean, how far the log went
  is unknown: the sequence continues above the reservation (``entry_seq``, kept ahead
  in the other copy), so no number can come back; the centre sees the gap explained.

An ordinary power cut (database and WAL intact, SQLite's commits fsynced) is no loss:
the sequence continues at the next number, without a gap.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQ_BLOCK = 100  # seq numbers reserved at a time in the other copy


@dataclass(frozen=True)
class SeqPlan:
    next_seq: int
    lost: tuple[int, int] | None = None
    skipped: tuple[int, int] | None = None

    @property
    def recovered(self) -> bool:
        return self.lost is not None or self.skipped is not None


def plan_seq(db_last: int, reserved: int, seen: int, clean: int | None,
             damaged: bool = False) -> SeqPlan:
    """Where the sequence goes on after an open (see the module docstring).

    ``damaged``: the file was replaced, or its WAL vanished after a stop that was not
    clean; ``clean``: the last seq recorded at a clean close (None after a crash).
    """
    known = max(seen, clean or 0)
    lost = (db_last + 1, known) if known > db_last else None
    top = max(db_last, known)
    if (lost is not None or damaged) and clean is None and reserved > top:
        return SeqPlan(reserved + 1, lost, (top + 1, reserved))
    return SeqPlan(top + 1, lost, None)
