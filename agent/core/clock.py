"""The clock decisions are made with, injected everywhere so tests control time."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock Unix seconds (what credentials' nbf/exp are compared with)."""
        ...

    def monotonic(self) -> float:
        """Seconds that never jump, for timeouts and rate limits."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FixedClock:
    """A clock that only moves when told to; for tests and ``verify --at``."""

    def __init__(self, now: float) -> None:
        self._now = now
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds
