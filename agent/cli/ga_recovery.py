"""``gate-agent state clear``: forget recovery reports once an operator has dealt with them.

Every recovery and downgrade the daemon finds (a damaged or older list, a lost or
rolled-back entry log, a clock floor lowered) is shown by ``revocations status``,
``outbox status``, ``check`` and the retained status until cleared here (a fresh full
revocation list clears the list's own reports). Refused while the daemon runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli.common import EXIT_OK, add_config_option, config_from_args
from agent.core.output import emit_json
from agent.store.owner import become_state_owner
from agent.store.recovery import clear_recoveries, read_recoveries


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("state", help="recovery reports of the gate's state")
    actions = parser.add_subparsers(dest="state_command", metavar="ACTION", required=True)
    clear = actions.add_parser(
        "clear", help="forget the recovery reports and lost seq ranges (daemon stopped)",
        description="Exit 0 when cleared; 1 when the daemon holds the state (stop it first).",
    )
    add_config_option(clear)
    clear.add_argument("--json", action="store_true", help="one JSON object")
    clear.set_defaults(func=_clear)


def _clear(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    become_state_owner(config.state.dir)
    before = read_recoveries(config.state.dir)
    cleared = clear_recoveries(config.state.dir)
    if args.json:
        emit_json({"cleared": cleared, "reports": before.reports, "lost": before.lost})
    else:
        print(f"cleared {len(before.reports)} recovery report(s) and "
              f"{len(before.lost)} lost seq range(s)")
    return EXIT_OK
