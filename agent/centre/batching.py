"""How the centre's writer composes a batch: by age and count, and fairly between gates.

Only ``agent.centre.service`` (the writer thread) uses it. A batch closes when it holds
``batch_max`` messages or its OLDEST message is ``batch_ms`` old (an event that waited
through the last commit counts that wait), and it takes at most ``per_gate`` events of
any one gate topic: a gate draining a backlog fills its window as fast as the centre
acknowledges it, and without the cap every commit would carry its whole window, so each
other gate's event waited behind a commit as long as that window (docs/decisions.md).
The excess is held, oldest first, for the next batch; nothing is dropped or acknowledged
early (the held messages are still unacknowledged at the broker, as queued ones are).
"""

from __future__ import annotations

import queue
import time
from collections import deque
from typing import Generic, Protocol, TypeVar

MAX_WAIT_S = 0.5  # an idle writer wakes this often (heartbeat, stop)


class Queued(Protocol):
    """What the batcher needs of a message (``agent.centre.link.Message``)."""

    @property
    def topic(self) -> str: ...

    @property
    def received_at(self) -> float: ...


M = TypeVar("M", bound=Queued)


class Batcher(Generic[M]):
    """Takes batches off ``source``; writer thread only (``held`` is not locked)."""

    def __init__(self, source: queue.SimpleQueue[M | None], batch_max: int, batch_ms: float,
                 per_gate: int) -> None:
        self.source = source
        self.batch_max = batch_max
        self.batch_s = batch_ms / 1000
        self.per_gate = per_gate
        self.held: deque[M] = deque()
        self.stopped = False  # a None (stop) was taken off the queue

    def take(self) -> list[M]:
        """The next batch; empty after MAX_WAIT_S with nothing to do, or on stop."""
        batch: list[M] = []
        counts: dict[str, int] = {}
        held, self.held = self.held, deque()
        for msg in held:
            self._place(msg, batch, counts)
        if not batch and not self.held:
            first = self._get(MAX_WAIT_S)
            if first is None:
                return batch
            self._place(first, batch, counts)
        oldest = batch[0] if batch else self.held[0]
        # A clock step only closes a batch early (forward) or waits batch_ms (backward).
        waited = max(0.0, time.time() - oldest.received_at)
        deadline = time.monotonic() + max(0.0, self.batch_s - waited)
        # Enough held over for the next batch: stop reading the queue (it stays bounded
        # by the broker's Receive Maximum either way).
        while len(batch) < self.batch_max and len(self.held) < self.batch_max:
            more = self._get(deadline - time.monotonic())
            if more is None:
                break
            self._place(more, batch, counts)
        return batch

    def _get(self, timeout: float) -> M | None:
        if self.stopped:
            return None
        try:
            msg = self.source.get(timeout=timeout) if timeout > 0 else self.source.get_nowait()
        except queue.Empty:
            return None
        if msg is None:
            self.stopped = True
        return msg

    def _place(self, msg: M, batch: list[M], counts: dict[str, int]) -> None:
        if len(batch) >= self.batch_max:
            self.held.append(msg)
            return
        if msg.topic.endswith("/events"):
            n = counts.get(msg.topic, 0)
            if n >= self.per_gate:
                self.held.append(msg)
                return
            counts[msg.topic] = n + 1
        batch.append(msg)
