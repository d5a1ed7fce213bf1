"""``gate-agent verify``: the gate's rulebook on text, stdin lines or an image.

Argument handling and output only; :mod:`agent.runtime.verifier` judges with the
daemon's gatekeeper, state and decision clock (read its docstring for the two
documented differences: no rate limit, and ``--at`` pins a trusted clock).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.cli.common import EXIT_NO, EXIT_OK, add_config_option, config_from_args
from agent.core.clock import Clock, FixedClock, SystemClock
from agent.core.errors import UsageError
from agent.core.output import emit_json
from agent.core.reasons import Reason
from agent.core.timefmt import parse_instant
from agent.gate.gatekeeper import Verdict
from agent.runtime.verifier import Verifier
from agent.store.owner import become_state_owner

if TYPE_CHECKING:
    pass


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="decide on a code as the gate would; one JSON line per input",
        description="Print {granted, reason, sub, cti} per input. Exit 0 if all granted, "
        "1 if any denied, 2 on a usage or config error.",
    )
    add_config_option(parser)
    parser.add_argument("--at", metavar="ISO8601", help="decide as of this time (default now)")
    parser.add_argument("text", nargs="?", metavar="TEXT",
                        help="the code's text, or - to read one code a line from stdin")
    parser.add_argument("--image", action="append", type=Path, metavar="FILE",
                        help="decode the QR code(s) in an image file first (repeatable)")
    parser.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    if (args.text is None) == (not args.image):
        raise UsageError("give exactly one of TEXT, - (stdin) or --image FILE")
    config = config_from_args(args)
    become_state_owner(config.state.dir)
    clock: Clock = (
        FixedClock(parse_instant(args.at, require_zone=True)) if args.at else SystemClock()
    )
    verifier = Verifier(config, clock, pinned=bool(args.at))
    all_granted = True
    try:
        for verdict in _verdicts(verifier, args):
            emit_json(verdict.to_json())
            # An ignored extra code in an image is no decision: the exit code is the
            # decided codes' answer.
            all_granted &= verdict.granted or verdict.reason is Reason.EXTRA_CODE
    finally:
        verifier.close()
    return EXIT_OK if all_granted else EXIT_NO


def _verdicts(verifier: Verifier, args: argparse.Namespace) -> Iterator[Verdict]:
    if args.image:
        for path in args.image:
            yield from verifier.judge_image(path)
    elif args.text == "-":
        for line in sys.stdin:
            yield verifier.judge(line.rstrip("\r\n"))
    else:
        yield verifier.judge(args.text)

