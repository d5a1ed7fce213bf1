"""Door inputs on gpiozero: contact, exit button, tamper, fire. Reports raw events only.

Each input's meaning comes from config (which level is "open" / "pressed" / "active",
pull-ups on or off), never from code defaults. Debounce is done here, in software, on
one worker thread: a level counts only once it has been stable for ``bounce_s`` (gpiozero's
``bounce_time`` differs between backends and does nothing on mock pins). What the events
mean (forced, held) is decided by :class:`agent.gate.door_monitor.DoorMonitor`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.core.clock import Clock, SystemClock
from agent.core.events import DoorInput
from hw.pins import gpio_device
from hw.settings import InputSettings

log = logging.getLogger(__name__)

OnEvent = Callable[[DoorInput], None]

# input name -> (kind reported on activation, on release; None: activation only)
_KINDS: dict[str, tuple[str, str | None]] = {
    "contact": ("contact_open", "contact_closed"),
    "exit": ("exit", None),
    "tamper": ("tamper", "tamper_clear"),
    "fire": ("fire", "fire_clear"),
}


@dataclass
class _Input:
    name: str
    device: Any
    active_high: bool  # raw level meaning "active" (open, pressed, alarm)
    on_kind: str
    off_kind: str | None  # None: only the activation is reported (exit button)
    stable: bool  # debounced state last reported
    pending_since: float | None = None


class DoorInputs:
    """Watches the configured input pins and calls ``on_event(DoorInput)`` on debounced changes.

    Kinds: ``contact_open``/``contact_closed``, ``exit``, ``tamper``/``tamper_clear``,
    ``fire``/``fire_clear``. A tamper or fire input already active at start is reported at
    once (a fire alarm at boot must still release the door).
    """

    def __init__(
        self,
        inputs: InputSettings,
        factory: Any,
        on_event: OnEvent,
        clock: Clock | None = None,
    ) -> None:
        """HardwareError (with what to do) when an input pin cannot be set up."""
        self._pull_up = inputs.pull_up
        self._factory = factory
        self._on_event = on_event
        self._clock = clock or SystemClock()
        self._bounce = inputs.bounce_s
        self._cond = threading.Condition()
        self._closed = False
        self._inputs: list[_Input] = []
        try:
            for name, wired in inputs.configured().items():
                on_kind, off_kind = _KINDS[name]
                self._inputs.append(
                    self._make(name, wired.pin, wired.active_high, on_kind, off_kind)
                )
        except Exception:
            self.close()
            raise
        self._worker = threading.Thread(target=self._run, name="door-inputs", daemon=True)
        self._worker.start()
        for inp in self._inputs:
            if inp.stable and inp.name in ("tamper", "fire"):
                self._emit(inp.on_kind)

    def _make(
        self, name: str, pin: int, active_high: bool, on_kind: str, off_kind: str | None
    ) -> _Input:
        from gpiozero import DigitalInputDevice

        pull_up = True if self._pull_up else None
        kwargs: dict[str, Any] = {"pull_up": pull_up, "pin_factory": self._factory}
        if pull_up is None:
            kwargs["active_state"] = True  # value == raw level
        device = gpio_device(f"door input {name!r}", pin,
                             lambda: DigitalInputDevice(pin, **kwargs))
        inp = _Input(name, device, active_high, on_kind, off_kind, stable=False)
        inp.stable = self._active(inp)
        device.when_activated = lambda: self._edge(inp)
        device.when_deactivated = lambda: self._edge(inp)
        return inp

    def _active(self, inp: _Input) -> bool:
        value = bool(inp.device.value)
        level = (not value) if self._pull_up else value
        return level == inp.active_high

    def state(self) -> dict[str, bool]:
        """Debounced state of each configured input (True = open / pressed / active)."""
        with self._cond:
            return {inp.name: inp.stable for inp in self._inputs}

    def _edge(self, inp: _Input) -> None:
        with self._cond:
            inp.pending_since = time.monotonic()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            due: list[str] = []
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                wait: float | None = None
                for inp in self._inputs:
                    if inp.pending_since is None:
                        continue
                    left = inp.pending_since + self._bounce - now
                    if left > 0:
                        wait = left if wait is None else min(wait, left)
                        continue
                    inp.pending_since = None
                    active = self._active(inp)
                    if active == inp.stable:
                        continue  # bounced back: nothing happened
                    inp.stable = active
                    if active:
                        due.append(inp.on_kind)
                    elif inp.off_kind is not None:
                        due.append(inp.off_kind)
                if not due:
                    self._cond.wait(wait)
            for kind in due:
                self._emit(kind)

    def _emit(self, kind: str) -> None:
        try:
            self._on_event(DoorInput(kind=kind, at=self._clock.now()))
        except Exception:
            log.exception("door input callback failed for %s", kind)

    def close(self) -> None:
        """Stop the worker and release the pins; safe to call twice."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        worker = getattr(self, "_worker", None)
        if worker is not None and worker is not threading.current_thread():
            worker.join(2.0)
        for inp in self._inputs:
            inp.device.close()

    def __enter__(self) -> DoorInputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
