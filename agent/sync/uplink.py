"""Uplink drain: the outbox goes to the broker over QoS 1 and leaves it only when confirmed.

The protocol (learned from ThingsBoard's store-and-forward, without its pre-fetch bug):
read pending rows in sequence order after the highest one already in flight, publish at
most ``window`` unconfirmed events, and delete a row only when the ``Acknowledger`` says
so (today: on its PUBACK). A new connection forgets everything in flight and starts again
from the oldest unconfirmed row, so the broker may see an event twice (same ``id`` and
``seq``; the centre deduplicates by id) but never zero times.

This class has no thread and no network: ``SyncService`` feeds it PUBACK mids on its
own worker thread and gives it a ``publish`` callable, so it is tested directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol


class PendingEntry(Protocol):
    """What the drain reads from an outbox row (``agent.store.Entry`` fits)."""

    @property
    def seq(self) -> int: ...

    @property
    def id(self) -> str: ...

    @property
    def event(self) -> dict[str, Any]: ...


class Outbox(Protocol):
    """The part of ``agent.store.EntryLog`` the drain uses."""

    def pending(self, after_seq: int = 0, limit: int = 100) -> Sequence[PendingEntry]: ...

    def ack(self, seqs: Iterable[int]) -> None: ...


class Acknowledger(Protocol):
    """Decides when a published event may leave the outbox.

    The seam for an end-to-end acknowledgement: Mosquitto PUBACKs a publish its ACL
    dropped, so a PUBACK proves only that the broker took the packet. An acknowledger
    that waits for the centre returns nothing from ``on_puback`` and later hands the
    confirmed sequence numbers to ``UplinkDrain.confirm``.
    """

    def on_puback(self, seqs: Sequence[int]) -> Sequence[int]:
        """Sequence numbers whose PUBACK arrived -> those that may be deleted now."""
        ...


class PubackAcknowledger:
    """Today's rule: the broker's PUBACK is the acknowledgement."""

    def on_puback(self, seqs: Sequence[int]) -> Sequence[int]:
        return seqs


Publish = Callable[[str, bytes], int]


def encode_event(entry: PendingEntry) -> bytes:
    """One JSON object per message; ``id`` and ``seq`` always present for dedup and gaps."""
    body = dict(entry.event)
    body["id"] = entry.id
    body["seq"] = entry.seq
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class UplinkDrain:
    """Bounded in-flight window over an outbox; the bookkeeping for one gate's events."""

    def __init__(
        self,
        outbox: Outbox,
        topic: str,
        window: int = 100,
        acknowledger: Acknowledger | None = None,
    ) -> None:
        if window < 1:
            raise ValueError(f"in-flight window must be at least 1, got {window}")
        self.outbox = outbox
        self.topic = topic
        self.window = window
        self.acknowledger: Acknowledger = acknowledger or PubackAcknowledger()
        self._inflight: dict[int, int] = {}  # mid -> seq, this connection only
        self._cursor = 0  # highest seq published on this connection
        self.published = 0  # messages sent, duplicates after reconnects included
        self.confirmed = 0  # rows deleted from the outbox

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def restart(self) -> None:
        """A new connection: nothing is in flight; resend from the oldest pending row."""
        self._inflight.clear()
        self._cursor = 0

    def fill(self, publish: Publish) -> int:
        """Publish pending rows until the window is full; return how many were sent.

        ``publish(topic, payload) -> mid`` may raise (connection gone): rows sent before
        stay in flight and the caller restarts the drain on the next connection.
        """
        room = self.window - len(self._inflight)
        if room <= 0:
            return 0
        rows = self.outbox.pending(after_seq=self._cursor, limit=room)
        for entry in rows:
            mid = publish(self.topic, encode_event(entry))
            self._inflight[mid] = entry.seq
            self._cursor = entry.seq
            self.published += 1
        return len(rows)

    def on_pubacks(self, mids: Iterable[int]) -> int:
        """PUBACKs arrived for these mids; unknown mids (other messages) are ignored."""
        seqs = [self._inflight.pop(mid) for mid in mids if mid in self._inflight]
        if not seqs:
            return 0
        return self.confirm(self.acknowledger.on_puback(seqs))

    def confirm(self, seqs: Sequence[int]) -> int:
        """Delete confirmed rows from the outbox (idempotent in the outbox)."""
        if not seqs:
            return 0
        self.outbox.ack(seqs)
        self.confirmed += len(seqs)
        return len(seqs)
