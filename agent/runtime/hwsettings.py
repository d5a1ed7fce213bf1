"""Config sections -> the small settings each ``hw`` driver takes (``hw.settings``).

The one place that knows both the config file's layout and the drivers' arguments, so a
driver never imports ``agent.core.config`` and a renamed config key changes only this.
"""

from __future__ import annotations

from agent.core.config import CameraSection, DoorSection, IndicatorsSection, SerialSection
from hw.settings import (
    CameraSettings,
    IndicatorSettings,
    InputPin,
    InputSettings,
    RelaySettings,
    SerialSettings,
)


def relay_settings(door: DoorSection) -> RelaySettings:
    return RelaySettings(pin=door.relay_pin, active_high=door.relay_active_high)


def input_settings(door: DoorSection) -> InputSettings:
    def wired(pin: int | None, active_high: bool) -> InputPin | None:
        return None if pin is None else InputPin(pin, active_high)

    return InputSettings(
        contact=wired(door.contact_pin, door.contact_open_high),
        exit=wired(door.exit_pin, door.exit_active_high),
        tamper=wired(door.tamper_pin, door.tamper_active_high),
        fire=wired(door.fire_pin, door.fire_active_high),
        pull_up=door.inputs_pull_up,
        bounce_s=door.bounce_s,
    )


def indicator_settings(ind: IndicatorsSection) -> IndicatorSettings:
    return IndicatorSettings(green_pin=ind.green_pin, red_pin=ind.red_pin,
                             buzzer_pin=ind.buzzer_pin, active_high=ind.active_high)


def camera_settings(camera: CameraSection) -> CameraSettings:
    return CameraSettings(device=camera.device, width=camera.width, height=camera.height,
                          fps=camera.fps, backend=camera.backend)


def serial_settings(serial: SerialSection) -> SerialSettings:
    return SerialSettings(port=serial.port, baud=serial.baud, terminator=serial.terminator)
