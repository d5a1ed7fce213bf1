"""Door alarms from raw inputs: forced open, held open, tamper, fire. Pure logic, no threads.

``hw.inputs.DoorInputs`` reports what the pins did; this class decides what it means, so
the controller (and tests) drive it with explicit times. The controller tells it when the
relay releases and locks (:meth:`door_changed`), passes every :class:`DoorInput`, and calls
:meth:`tick` periodically for the held-open timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.core.events import DoorInput

AlarmKind = Literal["forced", "held", "held_clear", "tamper", "tamper_clear", "fire", "fire_clear"]


@dataclass(frozen=True)
class DoorAlarm:
    kind: AlarmKind
    at: float
    detail: str


class DoorMonitor:
    """Turns contact, exit, tamper and fire inputs into alarms.

    ``forced``: the door opened while the relay was locked, no exit request and no fire,
    and not within ``grace_s`` of the relay locking again (a courier pulling the door as
    the pulse ends). ``held``: open longer than ``held_open_s`` (once per opening;
    ``held_clear`` when it finally closes).
    """

    def __init__(self, held_open_s: float, grace_s: float = 2.0) -> None:
        self._held_open_s = held_open_s
        self._grace_s = grace_s
        self.door_open = False
        self.fire = False
        self.tamper = False
        self._opened_at: float | None = None
        self._held_reported = False
        self._released_until: float | None = None  # last time the relay was (or will be) released
        self._unlocked = False

    def door_changed(self, unlocked: bool, now: float) -> None:
        """The relay released (True) or locked (False) at ``now``."""
        self._unlocked = unlocked
        self._released_until = now

    def _authorised(self, unlocked: bool, now: float) -> bool:
        if unlocked or self._unlocked or self.fire:
            return True
        return self._released_until is not None and now - self._released_until <= self._grace_s

    def on_input(self, ev: DoorInput, now: float, unlocked: bool) -> list[DoorAlarm]:
        """Alarms raised by one input event; ``unlocked`` is the relay's state now."""
        alarms: list[DoorAlarm] = []
        if ev.kind == "contact_open":
            if self.door_open:
                return alarms
            self.door_open = True
            self._opened_at = now
            self._held_reported = False
            if not self._authorised(unlocked, now):
                alarms.append(DoorAlarm("forced", now, "door opened without a grant or exit"))
        elif ev.kind == "contact_closed":
            if self.door_open and self._held_reported:
                alarms.append(DoorAlarm("held_clear", now, "door closed after being held open"))
            self.door_open = False
            self._opened_at = None
            self._held_reported = False
        elif ev.kind == "exit":
            # The controller pulses the relay for an exit request; that release covers
            # the opening that follows, so nothing to raise here.
            self._released_until = now
        elif ev.kind in ("tamper", "tamper_clear"):
            active = ev.kind == "tamper"
            if active != self.tamper:
                self.tamper = active
                kind: AlarmKind = "tamper" if active else "tamper_clear"
                alarms.append(DoorAlarm(kind, now, "enclosure tamper switch"))
        elif ev.kind in ("fire", "fire_clear"):
            active = ev.kind == "fire"
            if active != self.fire:
                self.fire = active
                alarms.append(
                    DoorAlarm("fire" if active else "fire_clear", now, "fire-alarm input")
                )
        alarms.extend(self.tick(now))
        return alarms

    def tick(self, now: float) -> list[DoorAlarm]:
        """The held-open timer; call about once a second."""
        if (
            self.door_open
            and not self._held_reported
            and not self.fire
            and self._opened_at is not None
            and now - self._opened_at >= self._held_open_s
        ):
            self._held_reported = True
            return [DoorAlarm("held", now, f"door open longer than {self._held_open_s:g} s")]
        return []
