"""The one decision clock: which source to believe, how far, and what it may move.

States, most trusted first (``ClockState``):

1. ``synchronised``: the OS says NTP has the clock (``adjtimex``, timesyncd's flag);
2. ``centre``: a signed centre time message that answered this gate's own nonce (or a
   broadcast that moved such a time forward within ``forward_bound_s``), plus monotonic
   time since, for ``centre_valid_s``;
3. ``holdover``: the clock was synchronised earlier in this boot: that time plus
   monotonic time since, for ``holdover_s`` (a Pi's crystal drifts well under 50 ppm,
   about 4 s a day: written in docs/protocol.md);
4. ``rtc``: ``[clock] rtc = true`` declares a battery-backed hardware clock;
5. ``untrusted``: none of these.

The time floor is the highest time a *trusted* state gave, persisted in meta.json and the
entry log's high-water marks every ``persist_every_s`` and at stop; an untrusted clock
never raises it. A trusted source more than ``floor_bound_s`` below the floor is in
conflict with it and counts as untrusted (alarm ``clock_below_floor``), until a centre
answer to this gate's nonce lowers the floor (alarm ``time_floor_lowered``): a floor saved
from a clock in the future cannot lock the gate out for good.

``now()`` is the trusted time, or ``max(system clock, floor)`` when untrusted; what a scan
may do then is ``[policy] on_untrusted_clock`` (agent.gate.clockrule). Requests for time
carry a fresh nonce (``time_request``); only the answer carrying the outstanding nonce may
set the clock from nothing or lower the floor. Controller thread only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from agent.core.bounds import MAX_TIME, in_time_range
from agent.core.clock import Clock
from agent.core.config import ClockSection
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


class Marks(Protocol):
    """The high-water marks (``agent.store.highwater.HighWater`` fits)."""

    def get(self, key: str) -> float | None: ...

    def raise_to(self, **values: float | None) -> None: ...

    def lower_to(self, key: str, value: float, why: str) -> None: ...


class ClockState(StrEnum):
    SYNCHRONISED = "synchronised"  # the OS says NTP has the clock
    CENTRE = "centre"  # a nonce-proven signed time message, plus monotonic time
    HOLDOVER = "holdover"  # synchronised earlier this boot, plus monotonic time
    RTC = "rtc"  # a battery-backed hardware clock the config declares
    UNTRUSTED = "untrusted"


@dataclass(frozen=True)
class TimeUpdate:
    applied: bool
    # applied | synchronised | older_than_floor | not_newer | unknown_nonce | needs_nonce
    # | too_far_ahead | out_of_range
    reason: str


def _restored_floor(stored: Any, damage: list[str]) -> float:
    """The saved floor, or 0 when it is no time this gate could have reached (damage)."""
    if isinstance(stored, bool) or not isinstance(stored, int | float):
        damage.append(f"saved time floor {stored!r:.60} is not a number: ignored")
        return 0.0
    if not 0 <= stored < MAX_TIME:  # also NaN and inf
        damage.append(f"saved time floor {stored!r} is not a time before 2100: ignored")
        return 0.0
    return float(stored)


@dataclass(frozen=True)
class ClockSettings:
    """``[clock]`` in the config (agent.core.config.ClockSection has the same names)."""

    rtc: bool = False
    holdover_s: float = 24 * 3600.0
    centre_valid_s: float = 6 * 3600.0
    floor_bound_s: float = 300.0
    forward_bound_s: float = 300.0
    request_every_s: float = 60.0


def clock_settings(section: ClockSection) -> ClockSettings:
    """``[clock]`` of the config as the timekeeper's settings (daemon and verify alike)."""
    return ClockSettings(rtc=section.rtc, holdover_s=section.holdover_h * 3600.0,
                         centre_valid_s=section.centre_valid_h * 3600.0,
                         floor_bound_s=section.floor_bound_s,
                         forward_bound_s=section.forward_bound_s,
                         request_every_s=section.request_every_s)


@functools.cache
def _adjtimex() -> Any:
    """libc's adjtimex, looked up once: ``find_library`` runs ``ldconfig -p`` (1.5-3 ms),
    and the probe runs every 30 s, now and then inside a scan's ``now()``."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).adjtimex


def system_clock_synchronised(flag: Path = TIMESYNCD_FLAG) -> bool | None:
    """True/False from the kernel's NTP state; None when it cannot be asked."""
    if flag.exists():
        return True
    try:
        timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = int(_adjtimex()(timex))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR


class Timekeeper:
    """A ``Clock`` for decisions, with its trust state and the floor rules above."""

    def __init__(
        self,
        clock: Clock,
        meta: MetaStore | None = None,
        probe: Probe = system_clock_synchronised,
        *,
        settings: ClockSettings | None = None,
        marks: Marks | None = None,
        persist_every_s: float = 300.0,
        probe_every_s: float = 30.0,
        message_tolerance_s: float = 5.0,
    ) -> None:
        self._clock = clock
        self._meta = meta
        self._marks = marks
        self._probe = probe
        self.settings = settings or ClockSettings()
        self._persist_every_s = persist_every_s
        self._probe_every_s = probe_every_s
        self._tolerance_s = message_tolerance_s
        stored = meta.get(FLOOR_KEY, 0.0) if meta is not None else 0.0
        self._damage: list[str] = []
        floor = _restored_floor(stored, self._damage)
        if marks is not None:
            floor = max(floor, _restored_floor(marks.get("time_floor") or 0.0, self._damage))
        self._floor = floor
        self._persisted_at: float | None = None
        self._synced: bool | None = None
        self._probed_at: float | None = None
        self._synced_anchor: tuple[float, float] | None = None  # (NTP time, monotonic)
        self._anchor: tuple[float, float] | None = None  # (centre time, monotonic then)
        self._last_centre_t = 0.0
        self._nonce: str | None = None
        self._requested_at: float | None = None
        self.alarms: dict[str, str] = {}

    # ---- Clock protocol

    def now(self) -> float:
        """Decision time: the trusted source, else the system clock but never below the
        floor (``on_untrusted_clock`` decides what an untrusted time may grant)."""
        state, t = self._read()
        if state is ClockState.UNTRUSTED:
            return max(t, self._floor)
        return t

    def monotonic(self) -> float:
        return self._clock.monotonic()

    # ---- trust

    @property
    def state(self) -> ClockState:
        return self._read()[0]

    @property
    def trusted(self) -> bool:
        return self.state is not ClockState.UNTRUSTED

    @property
    def floor(self) -> float:
        return self._floor

    def system_time(self) -> float:
        """The system clock itself (the untrusted rule's upper estimate)."""
        return self._clock.now()

    def accept_time(self, msg: TimeMessage) -> TimeUpdate:
        """A verified centre time message: a nonce answer may set the clock (and lower a
        floor in the future); a broadcast may only move a trusted centre time forward."""
        if not in_time_range(msg.t):  # parse_time refuses these already
            return TimeUpdate(False, "out_of_range")
        if msg.nonce is not None:
            return self._accept_answer(msg)
        if msg.t < self._floor - self._tolerance_s:
            return TimeUpdate(False, "older_than_floor")
        if msg.t <= self._last_centre_t:
            return TimeUpdate(False, "not_newer")
        if self._synchronised():
            self._note_skew(msg.t)
            return TimeUpdate(False, "synchronised")
        state, t = self._read()
        if state not in (ClockState.CENTRE, ClockState.HOLDOVER):
            return TimeUpdate(False, "needs_nonce")  # a replayed broadcast must not set it
        if msg.t < t - self._tolerance_s:
            return TimeUpdate(False, "not_newer")
        if msg.t > t + self.settings.forward_bound_s:
            return TimeUpdate(False, "too_far_ahead")
        self._last_centre_t = msg.t
        self._anchor = (max(msg.t, t), self._clock.monotonic())
        return TimeUpdate(True, "applied")

    def _accept_answer(self, msg: TimeMessage) -> TimeUpdate:
        if self._nonce is None or msg.nonce != self._nonce:
            return TimeUpdate(False, "unknown_nonce")
        self._nonce = None  # one answer per request
        self._last_centre_t = max(self._last_centre_t, msg.t)
        if msg.t < self._floor - self.settings.floor_bound_s:
            why = (f"time floor {format_instant(self._floor)} was in the future: lowered to "
                   f"the centre's answer {format_instant(msg.t)}")
            log.error("%s", why)
            self.alarms["time_floor_lowered"] = format_instant(msg.t)
            self._floor = msg.t
            self.alarms.pop("clock_below_floor", None)
            if self._meta is not None:
                self._meta.set(FLOOR_KEY, self._floor)
            if self._marks is not None:
                self._marks.lower_to("time_floor", self._floor, why)
        if self._synchronised() and not self._below_floor(self._clock.now()):
            self._note_skew(msg.t)
            return TimeUpdate(False, "synchronised")
        self._anchor = (msg.t, self._clock.monotonic())
        log.info("clock set from the centre's answer (offset %.1f s)", msg.t - self._clock.now())
        return TimeUpdate(True, "applied")

    def time_request(self, connected_now: bool = False) -> dict[str, Any] | None:
        """A request to publish on ``time_request`` when due, else None: at once when a
        broker has just answered, then every ``request_every_s`` while untrusted and
        every ``centre_valid_s / 4`` while only centre or holdover time holds."""
        state = self.state
        if state is ClockState.SYNCHRONISED or (state is ClockState.RTC and not connected_now):
            return None
        mono = self._clock.monotonic()
        every = (self.settings.request_every_s if state is ClockState.UNTRUSTED
                 else self.settings.centre_valid_s / 4)
        if (not connected_now and self._requested_at is not None
                and mono - self._requested_at < every):
            return None
        self._requested_at = mono
        self._nonce = secrets.token_hex(16)
        return {"nonce": self._nonce, "ts": format_instant(self.now()), "clock": str(state)}

    def tick(self) -> None:
        """Persist the floor when due; the controller calls this from its loop."""
        mono = self._clock.monotonic()
        if self._persisted_at is not None and mono - self._persisted_at < self._persist_every_s:
            return
        self.persist()

    def persist(self) -> None:
        """Raise and write the floor, only from a trusted clock (also on clean shutdown)."""
        self._persisted_at = self._clock.monotonic()
        state, t = self._read()
        if state is ClockState.UNTRUSTED or t <= self._floor:
            return
        self._floor = t
        if self._meta is not None:
            self._meta.set(FLOOR_KEY, self._floor)
        if self._marks is not None:
            self._marks.raise_to(time_floor=self._floor)

    def problems(self) -> list[str]:
        """Damage found in the saved time floor at start (ignored, alarmed)."""
        return list(self._damage)

    def snapshot(self) -> dict[str, Any]:
        """Clock fields for the retained status message."""
        state = self.state
        return {
            "clock": str(state),
            "clock_offset_s": round(self.now() - self._clock.now(), 3),
            "time_floor": format_instant(self._floor) if self._floor else None,
            "clock_alarms": dict(self.alarms),
        }

    # ---- internals

    def _read(self) -> tuple[ClockState, float]:
        mono = self._clock.monotonic()
        system = self._clock.now()
        if self._synchronised():
            self._synced_anchor = (system, mono)
            if not self._below_floor(system):
                return ClockState.SYNCHRONISED, system
        centre = self._since(self._anchor, self.settings.centre_valid_s, mono)
        if centre is not None:
            return ClockState.CENTRE, centre
        held = self._since(self._synced_anchor, self.settings.holdover_s, mono)
        if held is not None and not self._below_floor(held):
            return ClockState.HOLDOVER, held
        if self.settings.rtc and not self._below_floor(system):
            return ClockState.RTC, system
        return ClockState.UNTRUSTED, system

    def _below_floor(self, t: float) -> bool:
        below = t < self._floor - self.settings.floor_bound_s
        if below and "clock_below_floor" not in self.alarms:
            log.error("the clock reads %s, below the time floor %s: not trusted until the "
                      "centre answers a time request", format_instant(t),
                      format_instant(self._floor))
            self.alarms["clock_below_floor"] = format_instant(t)
        return below

    @staticmethod
    def _since(anchor: tuple[float, float] | None, valid_s: float, mono: float) -> float | None:
        if anchor is None:
            return None
        at_t, at_mono = anchor
        elapsed = mono - at_mono
        if elapsed > valid_s or elapsed < 0:
            return None
        return at_t + elapsed

    def _note_skew(self, t: float) -> None:
        skew = t - self._clock.now()
        if abs(skew) > self._tolerance_s:
            log.warning("centre time differs from the NTP clock by %.1f s", skew)

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
