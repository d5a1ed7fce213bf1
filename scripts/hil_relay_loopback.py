#!/usr/bin/env python3
"""Hardware-in-the-loop check on a real Pi: the door relay, looped back to an input.

Wiring (docs/installing.md, "Hardware-in-the-loop checks"): the relay's switched
contact (COM to GND, NO to the input pin) or, on a bench, the relay GPIO itself with a
1 kOhm resistor, to a spare GPIO configured with ``--input-pin``. The script drives the
relay through the daemon's own driver (``hw.door.RelayDoor``, from ``[door]`` of the
config) and reads the loopback input after every step:

  1. locked at start              5. lock() cancels a pulse at once
  2. a pulse releases it          6. a hold releases it, closing the driver locks it
  3. the pulse ends by itself     7. relay-safe (systemd's ExecStopPost) drives it locked
  4. a pulse during a pulse is re-armed, not stacked

Prints PASS/FAIL per step and exits 0 only when all passed. Not part of the test run;
``--mock`` runs the same steps on gpiozero's MockFactory (the loopback simulated) to
check the script itself anywhere.

    sudo -u gate-agent /opt/gate-agent/venv/bin/python scripts/hil_relay_loopback.py \\
        --config /etc/gate-agent/config.toml --input-pin 23
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout too

from agent.core.config import load_config
from agent.runtime.hwsettings import relay_settings
from hw.door import RelayDoor, force_locked
from hw.pins import make_pin_factory


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="/etc/gate-agent/config.toml")
    parser.add_argument("--input-pin", type=int, required=True, help="BCM pin of the loopback")
    parser.add_argument("--active-low", action="store_true",
                        help="the input reads low when the relay is released (contact to GND)")
    parser.add_argument("--pulse", type=float, default=0.5, help="test pulse length, s")
    parser.add_argument("--mock", action="store_true", help="MockFactory, loopback simulated")
    args = parser.parse_args()

    from gpiozero import DigitalInputDevice

    config = load_config(Path(args.config))
    factory = make_pin_factory("mock" if args.mock else "native")
    failures = 0

    def step(name: str, ok: bool, detail: str = "", hint: str = "") -> None:
        nonlocal failures
        failures += not ok
        note = detail if ok or not hint else f"{detail} -> {hint}".strip()
        print(f"{'PASS' if ok else 'FAIL'}  {name}{'  ' + note if note else ''}", flush=True)

    loop_input = DigitalInputDevice(args.input_pin, pull_up=args.active_low,
                                    pin_factory=factory)
    on_change: Callable[[str], None] | None = None
    if args.mock:  # the wire, simulated: the input follows the relay
        pin: Any = factory.pin(args.input_pin)

        def on_change(state: str) -> None:
            released = state == "unlocked"
            (pin.drive_low if released == args.active_low else pin.drive_high)()

    released = lambda: bool(loop_input.value)  # noqa: E731
    slack = 0.25  # relay contact bounce and scheduling on a busy Pi
    try:
        with RelayDoor(relay_settings(config.door), factory, on_change=on_change) as door:
            step("locked at start", wait_for(lambda: not released(), slack),
                 hint="the input reads released: check the wiring, --active-low and "
                 "door.relay_active_high")
            started = time.monotonic()
            door.pulse(args.pulse)
            step("pulse releases", wait_for(released, slack),
                 hint="no change on the input: check door.relay_pin and the loopback wire")
            ended = wait_for(lambda: not released(), args.pulse + slack)
            took = time.monotonic() - started
            step("pulse ends by itself", ended and took >= args.pulse - 0.05,
                 f"{took:.2f} s for a {args.pulse:g} s pulse")
            door.pulse(args.pulse)
            time.sleep(args.pulse / 2)
            door.pulse(args.pulse)  # re-arms: released until ~1.5 pulses after the first
            time.sleep(args.pulse * 0.75)
            step("pulse during a pulse is re-armed", released())
            wait_for(lambda: not released(), args.pulse + slack)
            door.pulse(10.0)
            wait_for(released, slack)
            door.lock()
            step("lock() cancels a pulse at once", wait_for(lambda: not released(), slack))
            door.hold_unlocked()
            step("hold releases", wait_for(released, slack))
        step("closing the driver locks", wait_for(lambda: not released(), slack))
        force_locked(relay_settings(config.door), factory)
        if args.mock and on_change is not None:
            on_change("locked")
        step("relay-safe leaves it locked", wait_for(lambda: not released(), slack))
    finally:
        loop_input.close()
        factory.close()
    print("all passed" if not failures else f"{failures} step(s) failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
