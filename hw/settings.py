"""The small settings each driver takes: pins, levels, devices, nothing of the config file.

Drivers never read ``agent.core.config``: ``agent.runtime.hwsettings`` builds these from
the config sections, and tests or bench rigs write them directly. Values arrive checked
(the config validates ranges); a pin the board refuses is a HardwareError from the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class RelaySettings:
    """The lock relay: its BCM pin and which level releases the door."""

    pin: int
    active_high: bool = True


@dataclass(frozen=True)
class InputPin:
    """One door input: its BCM pin and the raw level that means open / pressed / active."""

    pin: int
    active_high: bool


@dataclass(frozen=True)
class InputSettings:
    """The door's inputs (any may be absent), their pull-ups and the debounce time."""

    contact: InputPin | None = None
    exit: InputPin | None = None
    tamper: InputPin | None = None
    fire: InputPin | None = None
    pull_up: bool = True
    bounce_s: float = 0.05

    def configured(self) -> dict[str, InputPin]:
        """name -> pin of the inputs that are wired, in reporting order."""
        named = {"contact": self.contact, "exit": self.exit, "tamper": self.tamper,
                 "fire": self.fire}
        return {name: pin for name, pin in named.items() if pin is not None}


@dataclass(frozen=True)
class IndicatorSettings:
    """Green and red LEDs and a buzzer (any may be absent), all driven at one level."""

    green_pin: int | None = None
    red_pin: int | None = None
    buzzer_pin: int | None = None
    active_high: bool = True


@dataclass(frozen=True)
class CameraSettings:
    """The camera to open and the capture size and rate asked of it."""

    device: int | str = 0
    width: int = 1280
    height: int = 720
    fps: int = 15
    backend: Literal["opencv", "picamera2"] = "opencv"


@dataclass(frozen=True)
class SerialSettings:
    """The serial QR module's port, speed and line ending."""

    port: str
    baud: int = 9600
    terminator: Literal["cr", "lf", "crlf", "any"] = "any"
