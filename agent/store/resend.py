"""Send a range of past events again when the centre finds a hole in a gate's seqs.

With ``[mqtt] ack = "puback"`` a row leaves the outbox on the broker's PUBACK; a broker
that crashes before delivering loses it, and the centre sees a gap in the per-gate
``seq``. The signed ``resend`` command (``from``/``to`` seqs) makes those rows pending
again in the entry log, which keeps acknowledged rows for ``retention_days``; the
ordinary uplink then sends them again (same ``id`` and ``seq``: the centre deduplicates
as for any at-least-once duplicate), durably and across restarts.

The uplink reads pending rows after its own cursor (the highest seq it sent on this
connection), so rows made pending below that cursor would wait for the next reconnect.
:class:`ResendableOutbox` is the outbox the daemon hands to the sync service: after a
requeue, the next ``pending`` call starts from the first requeued row once. Rows in
flight above it may go out twice; duplicates are part of the contract.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from agent.store import EntryLog
from agent.store.entries import Entry, StoredEvent


class ResendableOutbox:
    """``agent.sync.uplink.Outbox`` over the entry log, plus :meth:`requeue`."""

    def __init__(self, entry_log: EntryLog) -> None:
        self._log = entry_log
        self._lock = threading.Lock()
        self._rewind_to: int | None = None

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[Entry]:
        return self._log.pending(self._rewound(after_seq), limit)

    def pending_payloads(self, after_seq: int = 0, limit: int = 100) -> list[StoredEvent]:
        """What the uplink reads: the stored JSON bytes, sent as they are."""
        return self._log.pending_payloads(self._rewound(after_seq), limit)

    def _rewound(self, after_seq: int) -> int:
        with self._lock:
            rewind, self._rewind_to = self._rewind_to, None
        return after_seq if rewind is None else min(after_seq, rewind - 1)

    def ack(self, seqs: Iterable[int]) -> int:
        return self._log.ack(seqs)

    def requeue(self, first: int, last: int) -> tuple[int, int]:
        """Rows ``first..last`` pending again (controller thread); see EntryLog.requeue."""
        changed, kept = self._log.requeue(first, last)
        if changed:
            with self._lock:
                current = self._rewind_to
                self._rewind_to = first if current is None else min(current, first)
        return changed, kept
