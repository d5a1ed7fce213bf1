"""The clock decisions are made with: is it trustworthy, and never below its floor.

Three sources, in order of trust:

1. the system clock when the OS says it is synchronised (NTP via systemd-timesyncd or
   chrony; checked with ``adjtimex`` and ``/run/systemd/timesync/synchronized``);
2. a signed time message from the centre (``gate/v1/time``), used when the system
   clock is not synchronised: its time plus the monotonic time elapsed since it came,
   valid for ``centre_valid_s``;
3. otherwise the system clock, marked *untrusted*.

Whatever the source, ``now()`` never returns less than the time floor: the highest
time handed out so far, persisted in ``Meta`` every ``persist_every_s`` (a Pi has no
battery clock and may boot at an old time). What happens to scans while the clock is
untrusted is ``policy.on_untrusted_clock``: ``deny`` (default) refuses every scan with
``clock_untrusted``; ``allow`` decides with ``now()`` anyway and the entry records the
clock state.

Not thread-safe by design: the controller thread owns it (it writes ``Meta``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from agent.core.bounds import MAX_TIME, in_time_range
from agent.core.clock import Clock
from agent.core.timefmt import format_instant
from agent.protocol.timemsg import TimeMessage

log = logging.getLogger(__name__)

TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
FLOOR_KEY = "time_floor"
TIME_ERROR = 5  # adjtimex(2): clock not synchronised

Probe = Callable[[], bool | None]


class MetaStore(Protocol):
    """Durable key-value state (``agent.store.Meta`` fits)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


class ClockState(StrEnum):
    SYNCHRONISED = "synchronised"  # the OS says NTP has the clock
    CENTRE = "centre"  # corrected by a recent signed time message
    UNTRUSTED = "untrusted"


@dataclass(frozen=True)
class TimeUpdate:
    applied: bool
    reason: str  # applied | synchronised | older_than_floor | not_newer | out_of_range


def _restored_floor(stored: Any, damage: list[str]) -> float:
    """The saved floor, or 0 when it is no time this gate could have reached (damage)."""
    if isinstance(stored, bool) or not isinstance(stored, int | float):
        damage.append(f"saved time floor {stored!r:.60} is not a number: ignored")
        return 0.0
    if not 0 <= stored < MAX_TIME:  # also NaN and inf
        damage.append(f"saved time floor {stored!r} is not a time before 2100: ignored")
        return 0.0
    return float(stored)


def system_clock_synchronised(flag: Path = TIMESYNCD_FLAG) -> bool | None:
    """True/False from the kernel's NTP state; None when it cannot be asked."""
    if flag.exists():
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = int(libc.adjtimex(timex))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR


class Timekeeper:
    """A ``Clock`` for decisions: trusted or not, and never running below its floor."""

    def __init__(
        self,
        clock: Clock,
        meta: MetaStore | None = None,
        probe: Probe = system_clock_synchronised,
        *,
        centre_valid_s: float = 6 * 3600,
        persist_every_s: float = 300.0,
        probe_every_s: float = 30.0,
        message_tolerance_s: float = 5.0,
    ) -> None:
        self._clock = clock
        self._meta = meta
        self._probe = probe
        self._centre_valid_s = centre_valid_s
        self._persist_every_s = persist_every_s
        self._probe_every_s = probe_every_s
        self._tolerance_s = message_tolerance_s
        stored = meta.get(FLOOR_KEY, 0.0) if meta is not None else 0.0
        self._damage: list[str] = []
        self._floor = _restored_floor(stored, self._damage)
        self._high = self._floor
        self._persisted_at: float | None = None
        self._synced: bool | None = None
        self._probed_at: float | None = None
        self._anchor: tuple[float, float] | None = None  # (centre time, monotonic then)
        self._last_centre_t = 0.0

    # ---- Clock protocol

    def now(self) -> float:
        """Decision time: the best source, never below the floor or an earlier answer."""
        t = max(self._source_time(), self._high)
        self._high = t
        return t

    def monotonic(self) -> float:
        return self._clock.monotonic()

    # ---- trust

    @property
    def state(self) -> ClockState:
        if self._synchronised():
            return ClockState.SYNCHRONISED
        if self._centre_time() is not None:
            return ClockState.CENTRE
        return ClockState.UNTRUSTED

    @property
    def trusted(self) -> bool:
        return self.state is not ClockState.UNTRUSTED

    @property
    def floor(self) -> float:
        return self._floor

    def accept_time(self, msg: TimeMessage) -> TimeUpdate:
        """Use a verified centre time message if the system clock is not synchronised.

        A message older than the floor, or not newer than the last one taken, is refused:
        replaying an old message must not move the clock back.
        """
        if not in_time_range(msg.t):  # parse_time refuses these already
            return TimeUpdate(False, "out_of_range")
        if msg.t < self._floor - self._tolerance_s:
            return TimeUpdate(False, "older_than_floor")
        if msg.t <= self._last_centre_t:
            return TimeUpdate(False, "not_newer")
        self._last_centre_t = msg.t
        if self._synchronised():
            skew = msg.t - self._clock.now()
            if abs(skew) > self._tolerance_s:
                log.warning("centre time differs from the NTP clock by %.1f s", skew)
            return TimeUpdate(False, "synchronised")
        self._anchor = (msg.t, self._clock.monotonic())
        log.info("clock set from centre time message (offset %.1f s)", msg.t - self._clock.now())
        return TimeUpdate(True, "applied")

    def tick(self) -> None:
        """Persist the floor when due; the controller calls this from its loop."""
        mono = self._clock.monotonic()
        if self._persisted_at is not None and mono - self._persisted_at < self._persist_every_s:
            return
        self.persist()

    def persist(self) -> None:
        """Write the floor now (also on clean shutdown)."""
        self._persisted_at = self._clock.monotonic()
        self._floor = max(self._floor, self.now())
        if self._meta is not None:
            self._meta.set(FLOOR_KEY, self._floor)

    def problems(self) -> list[str]:
        """Damage found in the saved time floor at start (ignored, alarmed)."""
        return list(self._damage)

    def snapshot(self) -> dict[str, Any]:
        """Clock fields for the retained status message."""
        return {
            "clock": str(self.state),
            "clock_offset_s": round(self.now() - self._clock.now(), 3),
            "time_floor": format_instant(self._floor) if self._floor else None,
        }

    # ---- internals

    def _synchronised(self) -> bool:
        mono = self._clock.monotonic()
        if self._probed_at is None or mono - self._probed_at >= self._probe_every_s:
            try:
                self._synced = self._probe()
            except Exception as exc:  # an unknown clock is an untrusted clock
                log.warning("clock synchronisation probe failed: %s", exc)
                self._synced = None
            self._probed_at = mono
        return bool(self._synced)

    def _centre_time(self) -> float | None:
        if self._anchor is None:
            return None
        centre_t, at_mono = self._anchor
        elapsed = self._clock.monotonic() - at_mono
        if elapsed > self._centre_valid_s or elapsed < 0:
            return None
        return centre_t + elapsed

    def _source_time(self) -> float:
        if self._synchronised():
            return self._clock.now()
        centre = self._centre_time()
        return centre if centre is not None else self._clock.now()
