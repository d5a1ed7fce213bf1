"""``gate-centre``: the centre service (ingest, acks, holes, time, revocations) and its
staff queries."""

from __future__ import annotations

from collections.abc import Sequence

from agent.cli.common import run_cli

COMMANDS: list[str] = [
    "agent.cli.gc_service",
    "agent.cli.gc_query",
    "agent.cli.gc_revocations",
    "agent.cli.gc_users",
]


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        "gate-centre",
        "The gate-agent centre: stores every gate's entry log, acknowledges it, repairs "
        "holes, signs time and owns the revocation list.",
        COMMANDS,
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
