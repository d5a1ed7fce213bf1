"""PUBACKs handed from paho's network thread to the sync worker a batch at a time.

Why: the worker woke for every few PUBACKs (6,000 wake-ups for 20,000 events on
loopback), and each wake-up took the GIL from paho's thread in the middle of its reads:
a futex round trip and a GIL hand-off per wake, about a tenth of the drain's CPU per
event against raw paho. Here the network thread keeps PUBACKs aside and wakes the worker
once ``every`` of them are waiting (a quarter window: the worker reads rows then anyway),
or as soon as nothing it counted is left in flight, so the window never runs dry and the
last PUBACKs of a backlog are not held. The worker takes whatever is held on every turn
of its loop (and at least every poll), so nothing waits longer than one poll.
Imported by ``agent.sync.service`` only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from agent.sync.link import LinkSignal


class PubackBatcher:
    """Holds PUBACK signals (paho's thread) until a batch is worth a wake-up."""

    def __init__(self, wake: Callable[[], None], every: int) -> None:
        self._wake = wake
        self.every = max(1, every)
        self._lock = threading.Lock()
        self._held: list[LinkSignal] = []
        self._outstanding = 0  # counted publishes on this link not yet PUBACKed
        self._woken = False  # a wake-up is queued and not yet answered by take()

    def sent(self, count: int = 1) -> None:
        """The worker published ``count`` more messages (before their PUBACK can come)."""
        with self._lock:
            self._outstanding += count

    def add(self, signal: LinkSignal) -> None:
        """A PUBACK (paho's thread): held; the worker is woken when a batch is ready."""
        with self._lock:
            self._held.append(signal)
            self._outstanding -= 1
            due = len(self._held) >= self.every or self._outstanding <= 0
            wake, self._woken = due and not self._woken, self._woken or due
        if wake:
            self._wake()

    def take(self) -> list[LinkSignal]:
        """Every PUBACK held so far (the worker, each turn of its loop)."""
        with self._lock:
            held, self._held = self._held, []
            self._woken = False
        return held

    def reset(self, every: int) -> None:
        """A new connection: the old one's counts mean nothing (its PUBACKs are stale)."""
        with self._lock:
            self.every = max(1, every)
            self._held.clear()
            self._outstanding = 0
            self._woken = False
