"""Pin factories: gpiozero's mock pins for tests and the demo, the real GPIO backend otherwise."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from agent.core.errors import HardwareError

PinFactoryKind = Literal["mock", "native"]
T = TypeVar("T")

# gpiozero's own preference order for real hardware.
_NATIVE_BACKENDS = (
    ("lgpio", "gpiozero.pins.lgpio", "LGPIOFactory"),
    ("rpigpio", "gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    ("pigpio", "gpiozero.pins.pigpio", "PiGPIOFactory"),
    ("native", "gpiozero.pins.native", "NativeFactory"),
)


def make_pin_factory(kind: PinFactoryKind) -> Any:
    """A fresh gpiozero pin factory; the caller owns it and calls ``close()`` when done.

    ``mock``: :class:`gpiozero.pins.mock.MockFactory` (records every pin transition).
    ``native``: the first real GPIO backend that loads (lgpio, RPi.GPIO, pigpio, gpiozero's
    pure-Python one); raises :class:`HardwareError` naming each failure when none does.
    """
    if kind == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if kind != "native":
        raise HardwareError(f"unknown pin factory {kind!r}: use mock or native")
    failures = []
    for name, module_name, class_name in _NATIVE_BACKENDS:
        try:
            module = __import__(module_name, fromlist=[class_name])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return getattr(module, class_name)()
        except Exception as exc:
            failures.append(f"{name}: {exc}")
    raise HardwareError(
        "no GPIO is available on this machine (" + "; ".join(failures) + "): run on a "
        "Raspberry Pi with python3-lgpio, or set GPIOZERO_PIN_FACTORY=mock to use mock pins"
    )


def pin_factory_from_env() -> Any:
    """``GPIOZERO_PIN_FACTORY=mock`` selects mock pins (tests, bench rigs); else real GPIO."""
    wanted = os.environ.get("GPIOZERO_PIN_FACTORY", "").strip().lower()
    return make_pin_factory("mock" if wanted == "mock" else "native")


def gpio_device(what: str, pin: int, make: Callable[[], T]) -> T:
    """Build one gpiozero device; a failure becomes a HardwareError saying what to do.

    ``what`` names the part for the installer ("door relay", "red LED"). gpiozero's own
    errors (pin in use, not a pin, fixed pull, no pin factory) and the GPIO backends'
    (lgpio "GPIO busy", permission denied) would otherwise reach the user as an internal
    error with no hint.
    """
    try:
        return make()
    except HardwareError:
        raise
    except Exception as exc:
        raise gpio_error(what, pin, exc) from exc


def gpio_error(what: str, pin: int, exc: BaseException) -> HardwareError:
    """The one-line HardwareError for a GPIO failure on ``pin``: what went wrong, what to do."""
    from gpiozero import exc as gz

    said = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, gz.GPIOPinInUse) or "busy" in str(exc).lower():
        return HardwareError(
            f"{what} on GPIO{pin}: the pin is already in use ({said}): give every part its "
            "own pin in the config, and stop any other program driving it (another "
            "gate-agent? systemctl stop gate-agent)"
        )
    if isinstance(exc, gz.PinInvalidPin):
        return HardwareError(
            f"{what}: GPIO{pin} is not a pin of this board ({said}): use a BCM GPIO "
            "number from the header (docs/wiring.md)"
        )
    if isinstance(exc, gz.PinFixedPull):
        return HardwareError(
            f"{what} on GPIO{pin}: this pin has a fixed pull-up resistor ({said}): wire the "
            "input to another pin, or set [door] inputs_pull_up = true"
        )
    if isinstance(exc, gz.BadPinFactory):
        return HardwareError(
            f"{what} on GPIO{pin}: no GPIO backend could be loaded ({said}): run on a "
            "Raspberry Pi with python3-lgpio, or set GPIOZERO_PIN_FACTORY=mock for mock pins"
        )
    if isinstance(exc, PermissionError):
        return HardwareError(
            f"{what} on GPIO{pin}: permission denied ({said}): run gate-agent as a user "
            "in the gpio group (the systemd unit does)"
        )
    return HardwareError(
        f"{what} on GPIO{pin} cannot be set up ({said}): check the pin number in the "
        "config and the wiring (docs/wiring.md)"
    )
