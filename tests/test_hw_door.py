"""The relay: locked from construction, timed pulses that re-arm, locked on close and on errors."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
from gpiozero.pins.mock import MockPin

from hw.door import RelayDoor, force_locked
from hw.settings import RelaySettings


def _levels(pin: Any) -> list[bool]:
    return [s.state for s in pin.states]


class Changes:
    """Collects on_change calls; wait_for() blocks (bounded) until a state arrives."""

    def __init__(self) -> None:
        self.states: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, state: str) -> None:
        with self._cond:
            self.states.append(state)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.states) >= count, timeout)


def test_relay_is_driven_locked_at_construction_active_high(factory: Any) -> None:
    pin = factory.pin(17)
    with RelayDoor(RelaySettings(pin=17, active_high=True), factory) as door:
        assert pin.function == "output"
        assert pin.state is False
        assert not door.unlocked


def test_relay_is_driven_locked_at_construction_active_low(factory: Any) -> None:
    pin = factory.pin(17)
    with RelayDoor(RelaySettings(pin=17, active_high=False), factory) as door:
        assert pin.state is True  # active-low board: high = relay off = locked
        door.pulse(5)
        assert pin.state is False
        assert door.unlocked


def test_pulse_releases_then_locks_by_itself(factory: Any) -> None:
    changes = Changes()
    pin = factory.pin(17)
    with RelayDoor(RelaySettings(pin=17), factory, on_change=changes) as door:
        door.pulse(0.2)
        assert door.unlocked
        assert changes.wait_for(2)
        assert changes.states == ["unlocked", "locked"]
        assert not door.unlocked
    levels = _levels(pin)
    assert levels[-2:] == [True, False]
    # the released stretch lasted at least the pulse (mock pin's own timestamps)
    assert pin.states[-1].timestamp >= 0.19


def test_new_pulse_during_a_pulse_extends_without_stacking_threads(factory: Any) -> None:
    changes = Changes()
    pin = factory.pin(17)
    with RelayDoor(RelaySettings(pin=17), factory, on_change=changes) as door:
        threads_before = threading.active_count()
        door.pulse(0.3)
        for _ in range(20):
            door.pulse(0.3)
        assert threading.active_count() == threads_before
        assert changes.wait_for(2)
        # one release, one lock: re-pulsing never toggled the relay
        assert changes.states == ["unlocked", "locked"]
    assert _levels(pin).count(True) == 1


def test_extension_restarts_the_close(factory: Any) -> None:
    changes = Changes()
    pin = factory.pin(17)
    with RelayDoor(RelaySettings(pin=17), factory, on_change=changes) as door:
        door.pulse(0.3)
        released = threading.Event()
        released.wait(0.2)  # bounded pause inside the first pulse
        door.pulse(0.3)
        assert changes.wait_for(2)
    # released for ~0.5 s (0.2 + 0.3), not the 0.3 s of a single pulse
    assert pin.states[-1].timestamp >= 0.45


def test_close_locks_at_once_and_is_idempotent(factory: Any) -> None:
    pin = factory.pin(17)
    door = RelayDoor(RelaySettings(pin=17), factory)
    door.pulse(60)
    door.close()
    assert pin.state is False
    assert pin.states[-1].timestamp < 1.0  # did not wait for the 60 s pulse
    door.close()
    door.pulse(1)  # ignored after close
    assert pin.state is False


def test_exception_in_caller_leaves_door_locked(factory: Any) -> None:
    pin = factory.pin(17)
    with pytest.raises(RuntimeError), RelayDoor(RelaySettings(pin=17), factory) as door:
        door.hold_unlocked()
        assert pin.state is True
        raise RuntimeError("controller crashed")
    assert pin.state is False


def test_hold_unlocked_survives_pulse_end_until_lock(factory: Any) -> None:
    changes = Changes()
    with RelayDoor(RelaySettings(pin=17), factory, on_change=changes) as door:
        door.pulse(0.05)
        door.hold_unlocked()
        threading.Event().wait(0.2)
        assert door.unlocked
        door.lock()
        assert not door.unlocked
        assert changes.states == ["unlocked", "locked"]


@pytest.mark.parametrize("seconds", [0, -1, float("inf"), float("nan")])
def test_pulse_rejects_lengths_that_are_not_a_finite_positive_time(
    factory: Any, seconds: float
) -> None:
    pin = factory.pin(17)
    with RelayDoor(RelaySettings(pin=17), factory) as door, pytest.raises(ValueError):
        door.pulse(seconds)
    assert True not in _levels(pin)  # never released


class StuckOncePin(MockPin):
    """A pin whose first attempt to go low fails, as a flaky GPIO driver would."""

    failures_left = 1

    def _set_state(self, value: bool) -> None:
        if not value and self.state and self.failures_left:
            self.failures_left -= 1
            raise OSError("GPIO write failed")
        super()._set_state(value)


def test_pulse_end_is_retried_when_the_pin_refuses_to_lock(factory: Any) -> None:
    changes = Changes()
    pin = factory.pin(17, pin_class=StuckOncePin)
    with RelayDoor(RelaySettings(pin=17), factory, on_change=changes) as door:
        door.pulse(0.05)
        assert changes.wait_for(2), "the relay timer died on the pin error"
        assert changes.states == ["unlocked", "locked"]
        assert pin.failures_left == 0
        door.pulse(0.05)  # the timer still ends later pulses
        assert changes.wait_for(4)
    assert _levels(pin)[-1] is False


def test_force_locked_drives_a_pin_left_released(factory: Any) -> None:
    pin = factory.pin(17)
    pin.function = "output"
    pin.state = True  # what a SIGKILLed agent leaves behind mid-pulse
    level = force_locked(RelaySettings(pin=17, active_high=True), factory)
    assert level == 0
    assert _levels(pin)[-1] is False


def test_force_locked_active_low(factory: Any) -> None:
    pin = factory.pin(17)
    assert force_locked(RelaySettings(pin=17, active_high=False), factory) == 1
    assert True in _levels(pin)


def test_close_with_a_failing_pin_still_stops_the_timer_and_releases_the_pin(
    factory: Any,
) -> None:
    pin = factory.pin(17, pin_class=StuckOncePin)
    door = RelayDoor(RelaySettings(pin=17), factory)
    door.hold_unlocked()
    with pytest.raises(OSError, match="GPIO write failed"):
        door.close()
    assert pin.function == "input"  # released: the relay board rests locked (wiring.md)
    assert not any(t.name == "door-relay" and t.is_alive() for t in threading.enumerate())
    door.close()  # idempotent


def test_change_reports_follow_the_pin_when_pulses_race_the_close(factory: Any) -> None:
    """The demo and `run --json` print these reports: they must never contradict the pin."""
    reports: list[str] = []

    def slow_observer(state: str) -> None:  # a reader behind a busy pipe
        if state == "locked":
            time.sleep(0.002)
        reports.append(state)

    door = RelayDoor(RelaySettings(pin=17), factory, on_change=slow_observer)
    try:
        for _ in range(300):
            door.pulse(0.001)
            time.sleep(0.0012)  # the next pulse lands as this one's close is reported
        door.lock()
        assert reports[-1] == "locked"
        pairs = itertools.pairwise(reports)
        assert all(a != b for a, b in pairs), "two reports of the same state in a row"
    finally:
        door.close()
