"""Pin factories: gpiozero's mock pins for tests and the demo, the real GPIO backend otherwise."""

from __future__ import annotations

import os
import warnings
from typing import Any, Literal

from agent.core.errors import HardwareError

PinFactoryKind = Literal["mock", "native"]

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
