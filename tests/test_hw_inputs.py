"""Door inputs on mock pins (debounce, exit, tamper, fire) and the pure alarm logic."""

from __future__ import annotations

import threading
from typing import Any

from agent.core.events import DoorInput
from agent.gate.door_monitor import DoorMonitor
from hw.inputs import DoorInputs
from hw.settings import InputPin, InputSettings


class Events:
    def __init__(self) -> None:
        self.kinds: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, ev: DoorInput) -> None:
        with self._cond:
            self.kinds.append(ev.kind)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.kinds) >= count, timeout)


# As agent.runtime.hwsettings builds it from [door] contact/exit/tamper/fire_pin = 27/22/23/24
# with the config's default levels (tests/test_hw_settings.py holds the two equal).
DOOR = InputSettings(contact=InputPin(27, True), exit=InputPin(22, False),
                     tamper=InputPin(23, True), fire=InputPin(24, False), bounce_s=0.05)


def settle(factory: Any, events: Events) -> None:
    """Bring the mock wiring to a quiet gate: door shut, enclosure shut (both switches to GND).

    The pull-ups read every open switch high, so a fresh mock board starts "door open,
    enclosure open"; the tamper is reported at start (as a real open enclosure would be).
    """
    assert events.wait_for(1)
    assert events.kinds == ["tamper"]
    factory.pin(27).drive_low()
    factory.pin(23).drive_low()
    assert events.wait_for(3)
    assert sorted(events.kinds[1:]) == ["contact_closed", "tamper_clear"]
    events.kinds.clear()


def test_contact_bounce_reports_one_open_and_one_close(factory: Any) -> None:
    events = Events()
    contact = factory.pin(27)
    with DoorInputs(DOOR, factory, events):
        settle(factory, events)
        # reed switch chatter while the door swings open: ends high (open)
        for _ in range(5):
            contact.drive_high()
            contact.drive_low()
        contact.drive_high()
        assert events.wait_for(1)
        contact.drive_low()
        assert events.wait_for(2)
        threading.Event().wait(0.2)  # would any extra event from the chatter arrive?
    assert events.kinds == ["contact_open", "contact_closed"]


def test_glitch_shorter_than_debounce_is_ignored(factory: Any) -> None:
    events = Events()
    exit_pin = factory.pin(22)
    with DoorInputs(DOOR, factory, events) as inputs:
        settle(factory, events)
        exit_pin.drive_low()
        exit_pin.drive_high()  # back before bounce_s elapsed
        threading.Event().wait(0.2)
        assert events.kinds == []
        assert inputs.state()["exit"] is False


def test_exit_button_reports_press_only(factory: Any) -> None:
    events = Events()
    exit_pin = factory.pin(22)
    with DoorInputs(DOOR, factory, events):
        settle(factory, events)
        exit_pin.drive_low()  # button to GND pressed
        assert events.wait_for(1)
        exit_pin.drive_high()
        threading.Event().wait(0.2)
    assert events.kinds == ["exit"]


def test_fire_active_at_start_is_reported_at_once(factory: Any) -> None:
    events = Events()
    # NC fire-panel loop: alarm (or a cut wire) lets the pull-up read high, as at start here
    door = InputSettings(fire=InputPin(24, active_high=True))
    with DoorInputs(door, factory, events) as inputs:
        assert events.wait_for(1)
        assert events.kinds == ["fire"]
        assert inputs.state()["fire"] is True


def test_tamper_and_clear(factory: Any) -> None:
    events = Events()
    tamper = factory.pin(23)
    with DoorInputs(DOOR, factory, events):
        settle(factory, events)
        tamper.drive_high()  # enclosure opened: the NC switch releases the input
        assert events.wait_for(1)
        tamper.drive_low()
        assert events.wait_for(2)
    assert events.kinds == ["tamper", "tamper_clear"]


def test_levels_follow_config_without_pull_ups(factory: Any) -> None:
    events = Events()
    door = InputSettings(contact=InputPin(27, active_high=False), pull_up=False, bounce_s=0.0)
    contact = factory.pin(27)
    with DoorInputs(door, factory, events) as inputs:
        assert inputs.state() == {"contact": True}  # floating mock pin reads low = open
        contact.drive_high()
        assert events.wait_for(1)
        contact.drive_low()
        assert events.wait_for(2)
    assert events.kinds == ["contact_closed", "contact_open"]


def test_closed_inputs_release_their_pins(factory: Any) -> None:
    inputs = DoorInputs(DOOR, factory, Events())
    inputs.close()
    inputs.close()
    # pins are free again: a new owner can claim them
    DoorInputs(DOOR, factory, Events()).close()


def ev(kind: str) -> DoorInput:
    return DoorInput(kind=kind, at=0.0)


def test_monitor_forced_open_without_grant() -> None:
    m = DoorMonitor(held_open_s=30)
    alarms = m.on_input(ev("contact_open"), now=100.0, unlocked=False)
    assert [a.kind for a in alarms] == ["forced"]


def test_monitor_open_during_pulse_or_just_after_is_not_forced() -> None:
    m = DoorMonitor(held_open_s=30, grace_s=2)
    assert m.on_input(ev("contact_open"), now=10.0, unlocked=True) == []
    m.on_input(ev("contact_closed"), now=12.0, unlocked=False)
    m.door_changed(True, now=20.0)
    m.door_changed(False, now=23.0)
    assert m.on_input(ev("contact_open"), now=24.0, unlocked=False) == []
    m.on_input(ev("contact_closed"), now=25.0, unlocked=False)
    assert [a.kind for a in m.on_input(ev("contact_open"), now=40.0, unlocked=False)] == ["forced"]


def test_monitor_held_open_once_then_clear() -> None:
    m = DoorMonitor(held_open_s=30)
    m.on_input(ev("contact_open"), now=0.0, unlocked=True)
    assert m.tick(29.0) == []
    assert [a.kind for a in m.tick(30.5)] == ["held"]
    assert m.tick(60.0) == []
    alarms = m.on_input(ev("contact_closed"), now=61.0, unlocked=False)
    assert [a.kind for a in alarms] == ["held_clear"]


def test_monitor_fire_makes_opening_legitimate_and_suppresses_held() -> None:
    m = DoorMonitor(held_open_s=30)
    assert [a.kind for a in m.on_input(ev("fire"), now=0.0, unlocked=False)] == ["fire"]
    assert m.on_input(ev("contact_open"), now=1.0, unlocked=False) == []
    assert m.tick(100.0) == []
    assert [a.kind for a in m.on_input(ev("fire_clear"), now=200.0, unlocked=False)] == [
        "fire_clear",
        "held",
    ]


def test_monitor_tamper_reported_once_per_change() -> None:
    m = DoorMonitor(held_open_s=30)
    assert [a.kind for a in m.on_input(ev("tamper"), 1.0, False)] == ["tamper"]
    assert m.on_input(ev("tamper"), 2.0, False) == []
    assert [a.kind for a in m.on_input(ev("tamper_clear"), 3.0, False)] == ["tamper_clear"]
