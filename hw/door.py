"""The lock relay on gpiozero: locked from the first instant, every release a self-ending pulse.

One timer thread owns the close: a pulse during a pulse moves the deadline (it never
stacks threads), ``lock()`` and ``close()`` cancel at once (the wait is on a condition,
not a sleep). ``close()`` drives the relay locked before releasing the pin, and the class
is a context manager so an exception in the caller still locks the door.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from hw.pins import gpio_device
from hw.settings import RelaySettings

log = logging.getLogger(__name__)

OnChange = Callable[[str], None]  # "unlocked" | "locked"

# After a failed attempt to lock at the end of a pulse, try again this soon.
LOCK_RETRY_S = 0.2


class RelayDoor:
    """agent.core.ports.Door on a gpiozero DigitalOutputDevice."""

    def __init__(
        self, relay: RelaySettings, factory: Any, on_change: OnChange | None = None
    ) -> None:
        """HardwareError (with what to do) when the pin cannot be driven."""
        # First thing: the relay is driven to its locked (inactive) level.
        self._relay = _relay_output(relay, factory)
        self._on_change = on_change
        # Held across "drive the pin, then report it" so reports arrive in the order the
        # pin changed; always taken before _cond, never while waiting on it.
        self._report = threading.RLock()
        self._cond = threading.Condition()
        self._deadline: float | None = None  # monotonic end of the current pulse
        self._held = False
        self._closed = False
        self._timer = threading.Thread(target=self._run, name="door-relay", daemon=True)
        self._timer.start()

    @property
    def unlocked(self) -> bool:
        with self._cond:
            return not self._closed and bool(self._relay.value)

    def pulse(self, seconds: float) -> None:
        """Release for ``seconds`` from now; during a pulse this restarts the close."""
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"pulse length must be a finite number of seconds > 0, got {seconds}")
        if not self._set(release=True, deadline=time.monotonic() + seconds, held=None):
            log.warning("pulse ignored: the door relay is closed")

    def hold_unlocked(self) -> None:
        """Release until :meth:`lock` (free mode, fire alarm)."""
        self._set(release=True, deadline=None, held=True)

    def lock(self) -> None:
        """Lock now, cancelling any pulse or hold."""
        self._set(release=False, deadline=None, held=False)

    def _set(self, *, release: bool, deadline: float | None, held: bool | None) -> bool:
        """Drive the relay and re-arm the timer together, then report the change in pin
        order; False when the door is already closed. ``held=None`` keeps a hold as is."""
        with self._report:
            with self._cond:
                if self._closed:
                    return False
                if held is not None:
                    self._held = held
                self._deadline = deadline
                changed = self._drive(release)
                self._cond.notify_all()
            self._notify(changed, "unlocked" if release else "locked")
        return True

    def close(self) -> None:
        """Lock, stop the timer and release the pin; safe to call twice.

        A failure to drive the relay still stops the timer and releases the pin
        (gpiozero makes it an input; docs/wiring.md: the relay board then rests
        locked) before the error is raised.
        """
        try:
            with self._report:
                with self._cond:
                    if self._closed:
                        return
                    self._held = False
                    self._deadline = None
                    self._closed = True
                    self._cond.notify_all()
                    changed = self._drive(False)
                self._notify(changed, "locked")
        finally:
            if threading.current_thread() is not self._timer:
                self._timer.join(2.0)
                if self._timer.is_alive():
                    log.warning("door relay timer thread did not stop within 2 s")
            if not self._relay.closed:
                self._relay.close()

    def __enter__(self) -> RelayDoor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _drive(self, release: bool) -> bool:
        """Set the relay; True when its state changed. Caller holds the condition."""
        if bool(self._relay.value) == release:
            return False
        if release:
            self._relay.on()
        else:
            self._relay.off()
        return True

    def _notify(self, changed: bool, state: str) -> None:
        if not changed or self._on_change is None:
            return
        try:
            self._on_change(state)
        except Exception:
            log.exception("door on_change callback failed for %s", state)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                if self._deadline is None:
                    self._cond.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
            self._end_pulse()

    def _end_pulse(self) -> None:
        """Lock at the deadline, unless a pulse re-armed it while we took the locks."""
        with self._report:
            with self._cond:
                if self._closed or self._deadline is None or self._deadline > time.monotonic():
                    return
                self._deadline = None
                try:
                    changed = False if self._held else self._drive(False)
                except Exception:
                    # The timer must outlive a pin error: a dead timer leaves every later
                    # pulse released for good. Retry the lock shortly.
                    log.exception("door relay: locking after the pulse failed; retrying")
                    self._deadline = time.monotonic() + LOCK_RETRY_S
                    return
            self._notify(changed, "locked")


def _relay_output(relay: RelaySettings, factory: Any) -> Any:
    from gpiozero import DigitalOutputDevice

    return gpio_device("door relay", relay.pin, lambda: DigitalOutputDevice(
        relay.pin, active_high=relay.active_high, initial_value=False, pin_factory=factory
    ))


def force_locked(relay: RelaySettings, factory: Any) -> int:
    """Drive the relay pin to its locked level and release it; return the level driven (0/1).

    For ``gate-agent relay-safe`` (systemd ExecStopPost): however the agent died, the relay
    ends at its locked level. On a Raspberry Pi a released output keeps its last level;
    docs/wiring.md asks for a relay board that also rests locked when the pin floats.
    """
    output = _relay_output(relay, factory)
    try:
        output.off()
        return int(output.pin.state)
    finally:
        output.close()
