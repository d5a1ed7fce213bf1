"""``gate-agent``: the commands that run on the gate device."""

from __future__ import annotations

from collections.abc import Sequence

from agent.cli.common import run_cli

# Each module has register(subparsers); keep this list in the order --help shows it.
COMMANDS: list[str] = [
    "agent.cli.ga_verify",
    "agent.cli.ga_hw",
    "agent.cli.ga_daemon",
    "agent.cli.ga_state",
    "agent.cli.ga_provision",
    "agent.cli.ga_recovery",
    "agent.cli.ga_web",
]


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        "gate-agent",
        "Courier-access gate agent: verify QR credentials offline, drive the door, "
        "record every entry.",
        COMMANDS,
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
