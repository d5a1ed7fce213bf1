"""Retry delays, exponential with jitter: the one helper every reconnect loop uses.

The gate's MQTT link (``agent.sync.service``), gatectl's ``watch`` (``agent.centre.watch``),
the camera (``hw.frameloop.FrameLoop``) and the serial scanner (``hw.serial_scanner``) all
back off with it, so a city of gates does not
reconnect in step and an unplugged device does not fill the journal.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from ``initial`` to ``maximum``; each is drawn from [d/2, d].

    The jitter spreads thousands of gates over the window after a broker restart
    instead of letting them all knock at the same instant.
    """

    def __init__(
        self, initial: float = 0.5, maximum: float = 30.0, rng: random.Random | None = None
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not a secret)
        self._next = initial

    def next_delay(self) -> float:
        delay = self._rng.uniform(self._next / 2, self._next)
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial
