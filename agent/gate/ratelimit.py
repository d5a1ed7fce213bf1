"""Rate limiting of repeated denied scans at one gate, without flooding the entry log.

A stuck garbage code in front of the camera, or someone trying codes, produces denials
as fast as frames arrive. Up to ``per_minute`` denials in any sliding minute are decided
and recorded one row each as usual. Beyond that the gate is "limited": further denials
get the reason ``rate_limited``; the first of an episode is recorded as a row of its own
and the rest are only counted, and one summary row per minute (and one when the episode
ends, and one at stop: ``flush``) says how many were suppressed and why; the first of an
episode has its own row and is not counted again in a summary. Grants are never limited: a valid
signature cannot be brute-forced, and a real courier must not be locked out by a flood.
Time is monotonic seconds, passed in.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field


@dataclass
class Suppressed:
    """What a summary row reports: denials counted but not recorded one by one."""

    count: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


class DenialLimiter:
    """Sliding-window count of recorded denials and the suppressed tail beyond it."""

    def __init__(self, per_minute: int, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self._recent: deque[float] = deque()
        self._episode: Suppressed | None = None
        self._last_summary = 0.0

    def _prune(self, mono: float) -> None:
        while self._recent and mono - self._recent[0] >= self.window_s:
            self._recent.popleft()

    def limited(self, mono: float) -> bool:
        """True when a further denial now would exceed the limit."""
        self._prune(mono)
        return len(self._recent) >= self.per_minute

    def note_denial(self, mono: float) -> None:
        """Count a denial that was recorded as its own row."""
        self._prune(mono)
        self._recent.append(mono)

    def suppress(self, reason: str, mono: float) -> bool:
        """Count a denial beyond the limit; True for the first of an episode (record it)."""
        if self._episode is None:
            self._episode = Suppressed()
            self._last_summary = mono
            return True  # recorded as its own row: not counted in the summary too
        self._episode.count += 1
        self._episode.reasons[reason] += 1
        return False

    def flush(self) -> Suppressed | None:
        """At stop: what is counted and not yet in a summary row (None if nothing)."""
        summary, self._episode = self._episode, None
        return summary if summary is not None and summary.count else None

    def due_summary(self, mono: float) -> Suppressed | None:
        """A summary to record now: every window while limited, and once when it ends."""
        if self._episode is None:
            return None
        ended = not self.limited(mono)
        if not ended and mono - self._last_summary < self.window_s:
            return None
        summary = self._episode
        self._last_summary = mono
        self._episode = None if ended else Suppressed()
        return summary if summary.count else None

    @property
    def active(self) -> bool:
        return self._episode is not None
