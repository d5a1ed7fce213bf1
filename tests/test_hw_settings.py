"""Drivers take their own small settings (never the config file), and a pin gpiozero
refuses becomes one HardwareError line that says what to do, from the driver up to
``gate-agent run`` and ``check``."""

from __future__ import annotations

import ast
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero import DigitalOutputDevice

from agent.cli.gate_agent import main as gate_agent
from agent.core.config import CameraSection, DoorSection, IndicatorsSection, SerialSection
from agent.core.errors import HardwareError
from agent.runtime.hwsettings import (
    camera_settings,
    indicator_settings,
    input_settings,
    relay_settings,
    serial_settings,
)
from hw.door import RelayDoor, force_locked
from hw.indicators import LedIndicators
from hw.inputs import DoorInputs
from hw.pins import make_pin_factory
from hw.settings import (
    CameraSettings,
    IndicatorSettings,
    InputPin,
    InputSettings,
    RelaySettings,
    SerialSettings,
)
from tests.conftest import ROOT
from tests.daemon_support import gate_files
from tests.test_hw_inputs import DOOR


def test_no_driver_reads_the_config_file() -> None:
    readers = []
    for path in sorted(ROOT.glob("hw/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            readers += [f"{path.name}: {n}" for n in names if n.startswith("agent.core.config")]
    assert not readers


def test_the_adapter_carries_every_config_key_a_driver_needs() -> None:
    door = DoorSection(relay_pin=5, relay_active_high=False, contact_pin=27, exit_pin=22,
                       tamper_pin=23, fire_pin=24)
    assert relay_settings(door) == RelaySettings(pin=5, active_high=False)
    assert input_settings(door) == DOOR  # the inputs the driver tests use, from config
    assert input_settings(DoorSection(contact_pin=27, contact_open_high=False,
                                      inputs_pull_up=False, bounce_s=0.0)) == InputSettings(
        contact=InputPin(27, False), pull_up=False, bounce_s=0.0)
    assert input_settings(DoorSection()).configured() == {}
    assert indicator_settings(IndicatorsSection(green_pin=5, red_pin=6, active_high=False)) == (
        IndicatorSettings(green_pin=5, red_pin=6, buzzer_pin=None, active_high=False))
    assert camera_settings(CameraSection(device="/dev/video2", width=640, height=480, fps=10,
                                         backend="picamera2")) == CameraSettings(
        "/dev/video2", 640, 480, 10, "picamera2")
    assert serial_settings(SerialSection(port="/dev/ttyS0", baud=115200, terminator="cr")) == (
        SerialSettings("/dev/ttyS0", 115200, "cr"))


def test_two_relays_on_one_pin_is_a_hardware_error_with_what_to_do(factory: Any) -> None:
    with RelayDoor(RelaySettings(pin=17), factory):
        with pytest.raises(HardwareError, match="door relay on GPIO17: the pin is already in "
                           "use") as caught:
            RelayDoor(RelaySettings(pin=17), factory)
        assert "own pin" in str(caught.value) and "stop any other program" in str(caught.value)
        with pytest.raises(HardwareError, match="already in use"):
            force_locked(RelaySettings(pin=17), factory)


def test_a_pin_the_board_does_not_have_names_the_fix(factory: Any) -> None:
    with pytest.raises(HardwareError, match="GPIO99 is not a pin of this board.*BCM"):
        RelayDoor(RelaySettings(pin=99), factory)


def test_an_input_on_a_fixed_pull_up_pin_says_to_move_it_or_use_the_pull_up(
    factory: Any,
) -> None:
    # GPIO2 (I2C SDA) has a fixed pull-up on a Pi: no pull-down-only input there.
    with pytest.raises(HardwareError, match="door input 'contact' on GPIO2.*inputs_pull_up"):
        DoorInputs(InputSettings(contact=InputPin(2, True), pull_up=False), factory,
                   lambda _ev: None)


def test_an_indicator_pin_in_use_releases_the_others(factory: Any) -> None:
    held = DigitalOutputDevice(6, pin_factory=factory)
    try:
        with pytest.raises(HardwareError, match="red LED on GPIO6: the pin is already in use"):
            LedIndicators(IndicatorSettings(green_pin=5, red_pin=6), factory)
        DigitalOutputDevice(5, pin_factory=factory).close()  # green was released again
    finally:
        held.close()


@pytest.fixture
def relay_pin_taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The daemon's and check's pin factory, with the relay pin (17) already driven."""
    factory = make_pin_factory("mock")
    other = DigitalOutputDevice(17, pin_factory=factory)
    monkeypatch.setattr("hw.pins.pin_factory_from_env", lambda: factory)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in handlers.items():  # `run` in-process installs its own
            signal.signal(sig, handler)
        other.close()
        factory.reset()


def test_run_with_the_relay_pin_taken_prints_one_line_and_exits_1(
    tmp_path: Path, relay_pin_taken: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = gate_files(tmp_path)
    assert gate_agent(["run", "--config", str(config), "--duration", "5s"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    last = err[-1]
    assert last.startswith("gate-agent: door relay on GPIO17: the pin is already in use")
    assert "internal error" not in "\n".join(err) and "Traceback" not in "\n".join(err)


def test_check_with_the_relay_pin_taken_fails_the_relay_item_with_the_hint(
    tmp_path: Path, relay_pin_taken: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = gate_files(tmp_path)
    assert gate_agent(["check", "--config", str(config), "--json", "--yes"]) == 1
    results = {r["check"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    relay = results["relay"]
    assert relay["status"] == "fail"
    assert str(relay["detail"]).startswith("door relay on GPIO17: the pin is already in use")
    assert "own pin" in str(relay["detail"])
