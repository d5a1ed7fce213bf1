"""The door actuator: every relay action of the controller, and the relay's backstop.

A pulse is a timed release the relay driver ends itself; a hold (free mode, fire alarm)
keeps the door released until the hold ends. The door monitor is told when the door was
released and when the pulse ended, so forced/held-open alarms see the relay's truth. A
pulse still released ``RELAY_OVERRUN_S`` after it should have ended is locked here, in
case the driver's own timer failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agent.core.clock import Clock
from agent.core.ports import Door
from agent.core.timefmt import format_instant
from agent.gate.door_monitor import DoorMonitor

log = logging.getLogger(__name__)

RELAY_OVERRUN_S = 1.0


class DoorActuator:
    """Pulse, hold and lock one door (controller thread only)."""

    def __init__(self, door: Door, unlock_s: float, clock: Clock, monitor: DoorMonitor,
                 hold_wanted: Callable[[], bool], alarms: dict[str, str]) -> None:
        self.door = door
        self._unlock_s = unlock_s
        self._clock = clock
        self._monitor = monitor
        self._hold_wanted = hold_wanted
        self._alarms = alarms
        self.holding = False
        self._relay_unlocked = False
        self._pulse_ends_mono: float | None = None

    @property
    def unlocked(self) -> bool:
        return self.door.unlocked

    def pulse(self, now: float) -> None:
        """One timed release (nothing to do while a hold keeps the door released)."""
        if self.holding:
            return
        self._pulse_ends_mono = self._clock.monotonic() + self._unlock_s
        self.door.pulse(self._unlock_s)
        self._relay_unlocked = True
        self._monitor.door_changed(True, now)

    def apply_hold(self) -> None:
        """Free mode or an active fire alarm hold the door released; otherwise locked."""
        want = self._hold_wanted()
        if want and not self.holding:
            self.door.hold_unlocked()
        elif not want and self.holding:
            self.door.lock()
        self.holding = want

    def safe_lock(self) -> None:
        """After an error: lock, unless a standing hold (free mode, fire) wants it released;
        that hold is the centre's or the fire panel's decision, not the error's doing."""
        try:
            if self._hold_wanted():
                self.door.hold_unlocked()
                self.holding = True
            else:
                self.door.lock()
                self.holding = False
        except Exception:
            log.exception("locking the door failed")

    def track(self, now: float) -> None:
        """Tell the door monitor when a pulse ended (the relay times out on its own)."""
        unlocked = self.door.unlocked
        if self._relay_unlocked and not unlocked:
            self._monitor.door_changed(False, now)
        self._relay_unlocked = unlocked

    def end_overrun_pulse(self, mono: float) -> None:
        """Backstop for the relay driver: a pulse that outlived its length is ended here."""
        if self.holding or not self.door.unlocked:
            return
        ends = self._pulse_ends_mono
        if ends is not None and mono < ends + RELAY_OVERRUN_S:
            return
        log.critical("relay still released %s after its pulse should have ended: locking it",
                     "with no pulse" if ends is None else f"{mono - ends:.1f} s")
        self._alarms["relay_overrun"] = format_instant(self._clock.now())
        self.door.lock()
        self._pulse_ends_mono = None
