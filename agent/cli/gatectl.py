"""``gatectl``: centre-staff tools for keys, credentials, revocations and commands."""

from __future__ import annotations

from collections.abc import Sequence

from agent.cli.common import run_cli

COMMANDS: list[str] = [
    "agent.cli.ctl_keys",
    "agent.cli.ctl_credential",
    "agent.cli.ctl_revocations",
    "agent.cli.ctl_broker",
    "agent.cli.ctl_provision",
]


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        "gatectl",
        "Centre-staff tool for gate-agent: keys, credentials, revocation lists, gate commands.",
        COMMANDS,
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
