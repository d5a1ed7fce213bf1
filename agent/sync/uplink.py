"""Uplink drain: the outbox goes to the broker over QoS 1 and leaves it only when confirmed.

The protocol (learned from ThingsBoard's store-and-forward, without its pre-fetch bug):
read pending rows in sequence order after the highest one already in flight, publish at
most ``window`` unconfirmed events, and delete a row only when the ``Acknowledger`` says
so (today: on its PUBACK). A new connection forgets everything in flight and starts again
from the oldest unconfirmed row, so the broker may see an event twice (same ``id`` and
``seq``; the centre deduplicates by id) but never zero times. Each message is the
event's JSON exactly as the entry log recorded it (``id`` and ``seq`` included): the
drain neither decodes nor re-encodes it (that was 9% of the worker's time).

This class has no thread and no network: ``SyncService`` feeds it PUBACK mids on its
own worker thread and gives it a ``publish`` callable, so it is tested directly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

log = logging.getLogger(__name__)


class PendingEntry(Protocol):
    """What the drain reads from an outbox row (``agent.store.StoredEvent`` fits): the
    event's JSON as recorded, ``id`` and ``seq`` included, published byte for byte."""

    @property
    def seq(self) -> int: ...

    @property
    def payload(self) -> bytes: ...


class Outbox(Protocol):
    """The part of ``agent.store.EntryLog`` the drain uses."""

    def pending_payloads(
        self, after_seq: int = 0, limit: int = 100
    ) -> Sequence[PendingEntry]: ...

    def ack(self, seqs: Iterable[int]) -> object: ...


class Acknowledger(Protocol):
    """Decides when a published event may leave the outbox.

    Mosquitto PUBACKs a publish that its ACL dropped, and loses PUBACKed messages it
    had not yet delivered when it crashes (measured: a SIGKILLed broker lost most of
    the events a lagging subscriber had not received yet), so a PUBACK proves only
    that the broker took the packet. ``CentreAcknowledger`` waits for the centre's
    own acknowledgement instead.
    """

    def on_puback(self, seqs: Sequence[int]) -> Sequence[int]:
        """Sequence numbers whose PUBACK arrived -> those that may be deleted now."""
        ...

    def on_centre_ack(self, upto: int | None, seqs: Sequence[int]) -> Sequence[int]:
        """The centre stored ``seqs`` and every seq <= ``upto`` -> seqs to delete now."""
        ...

    def overdue(self, now: float) -> bool:
        """True when PUBACKed events waited too long for the centre: resend them."""
        ...

    def reset(self) -> None:
        """A new connection: everything pending is sent again anyway."""
        ...

    @property
    def awaiting(self) -> int:
        """PUBACKed events still waiting for this acknowledger; they count in the window."""
        ...


class PubackAcknowledger:
    """The broker's PUBACK is the acknowledgement (works with any centre)."""

    def on_puback(self, seqs: Sequence[int]) -> Sequence[int]:
        return seqs

    def on_centre_ack(self, upto: int | None, seqs: Sequence[int]) -> Sequence[int]:
        return ()

    def overdue(self, now: float) -> bool:
        return False

    def reset(self) -> None:
        pass

    @property
    def awaiting(self) -> int:
        return 0


class CentreAcknowledger:
    """End to end: a row leaves the outbox when the centre says it stored it.

    The centre publishes ``{"upto": N}`` (every seq <= N stored, the usual form since
    seqs have no holes) and/or ``{"seqs": [...]}`` on ``.../events/ack``. Events that
    the broker PUBACKed but the centre did not confirm within ``timeout_s`` are sent
    again (same id). Events waiting here count in the drain's window, so while the
    centre is down a gate re-sends at most one window per ``timeout_s``, not its whole
    backlog.

    The centre's ack can be handled before the PUBACK of the same event (the worker
    takes the centre's message and the broker's PUBACKs from one queue in batches): such
    an early ack is remembered, and the PUBACK then confirms the row at once instead of
    leaving it to be sent again after ``timeout_s``.
    """

    EARLY_LIMIT = 10_000  # early acks remembered at most (a window is far smaller)

    def __init__(self, clock: Callable[[], float], timeout_s: float = 60.0) -> None:
        self._clock = clock
        self.timeout_s = timeout_s
        self._awaiting: dict[int, float] = {}  # seq -> monotonic time of its PUBACK
        self._early: dict[int, None] = {}  # seqs the centre stored before their PUBACK

    def on_puback(self, seqs: Sequence[int]) -> Sequence[int]:
        now = self._clock()
        done = []
        for seq in seqs:
            if seq in self._early:
                del self._early[seq]
                done.append(seq)
            else:
                self._awaiting.setdefault(seq, now)
        return done

    def on_centre_ack(self, upto: int | None, seqs: Sequence[int]) -> Sequence[int]:
        done = {s for s in seqs if s in self._awaiting}
        if upto is not None:
            done.update(s for s in self._awaiting if s <= upto)
        for seq in done:
            del self._awaiting[seq]
        for seq in seqs:
            if seq not in done:
                self._early[seq] = None
        while len(self._early) > self.EARLY_LIMIT:
            del self._early[next(iter(self._early))]
        return sorted(done)

    def overdue(self, now: float) -> bool:
        return any(now - at > self.timeout_s for at in self._awaiting.values())

    def reset(self) -> None:
        self._awaiting.clear()
        self._early.clear()

    @property
    def awaiting(self) -> int:
        return len(self._awaiting)


Publish = Callable[[str, bytes], int]


class UplinkDrain:
    """Bounded window of unconfirmed events over an outbox (in flight to the broker, plus,
    with the centre acknowledgement, PUBACKed ones the centre has not confirmed yet)."""

    def __init__(
        self,
        outbox: Outbox,
        topic: str,
        window: int = 100,
        acknowledger: Acknowledger | None = None,
        batch: int = 1,
        refill: int = 1,
    ) -> None:
        """``batch`` > 1: delete PUBACKed rows that many at a time (:meth:`flush` deletes
        the rest; so does the PUBACK that empties the window); ``refill`` > 1: read new
        rows only when that much room is free. Each SQLite call is a lock, a statement
        and a WAL commit on the worker's thread, which also runs the network loop, so
        fewer, larger calls keep the drain near raw paho; a PUBACKed row waiting in the
        batch is at worst sent once more after a crash, never lost."""
        if window < 1:
            raise ValueError(f"in-flight window must be at least 1, got {window}")
        if batch < 1 or not 1 <= refill <= window:
            raise ValueError(f"batch must be >= 1 and refill 1..{window}: {batch}, {refill}")
        self.outbox = outbox
        self.topic = topic
        self.window = window
        self.acknowledger: Acknowledger = acknowledger or PubackAcknowledger()
        self._inflight: dict[int, int] = {}  # mid -> seq, this connection only
        self._cursor = 0  # highest seq published on this connection
        self.confirmed = 0  # rows deleted from the outbox
        self.batch = batch
        self.refill = refill
        self._confirmable: list[int] = []  # PUBACKed, to be deleted with the next batch

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def restart(self) -> None:
        """A new connection: nothing is in flight; resend from the oldest pending row."""
        self.flush()
        self._inflight.clear()
        self._cursor = 0
        self.acknowledger.reset()

    def fill(self, publish: Publish) -> int:
        """Publish pending rows until the window is full; return how many were sent.

        ``publish(topic, payload) -> mid`` may raise (connection gone): rows sent before
        stay in flight and the caller restarts the drain on the next connection.
        """
        room = self.window - len(self._inflight) - self.acknowledger.awaiting
        if room < self.refill:
            return 0
        rows = self.outbox.pending_payloads(after_seq=self._cursor, limit=room)
        for entry in rows:
            mid = publish(self.topic, entry.payload)  # the recorded JSON, not re-encoded
            self._inflight[mid] = entry.seq
            self._cursor = entry.seq
        return len(rows)

    def on_pubacks(self, mids: Iterable[int]) -> int:
        """PUBACKs arrived for these mids; unknown mids (other messages) are ignored."""
        seqs = [self._inflight.pop(mid) for mid in mids if mid in self._inflight]
        if not seqs:
            return 0
        self._confirmable.extend(self.acknowledger.on_puback(seqs))
        if len(self._confirmable) < self.batch and self._inflight:
            return 0  # more PUBACKs are coming: delete with them
        return self.flush()

    def flush(self) -> int:
        """Delete the PUBACKed rows still waiting for a full batch (idle, stop, restart)."""
        seqs, self._confirmable = self._confirmable, []
        return self.confirm(seqs)

    def on_centre_ack(self, payload: bytes) -> int:
        """The centre's acknowledgement (``{"upto": N}`` / ``{"seqs": [...]}``)."""
        try:
            body = json.loads(payload)
            upto = body.get("upto")
            seqs = body.get("seqs") or []
            if upto is not None and not isinstance(upto, int):
                raise ValueError("upto is not an integer")
            if not isinstance(seqs, list) or not all(isinstance(s, int) for s in seqs):
                raise ValueError("seqs is not a list of integers")
        except (ValueError, AttributeError) as exc:
            log.warning("ignored a malformed centre acknowledgement: %s", exc)
            return 0
        return self.confirm(self.acknowledger.on_centre_ack(upto, seqs))

    def confirm(self, seqs: Sequence[int]) -> int:
        """Delete confirmed rows from the outbox (idempotent in the outbox)."""
        if not seqs:
            return 0
        self.outbox.ack(seqs)
        self.confirmed += len(seqs)
        return len(seqs)
