"""``gate-agent verify``: run the gate's decision on text, stdin lines or an image.

The same pipeline the daemon uses: the config's trusted keys and policy, the state
dir's revocation list (read only) and replay cache (a granted live code is remembered,
so showing it again is ``replayed``, also across calls). The clock is taken as trusted
(``--at`` pins it); the daemon's time-floor checks do not apply here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.cli.common import EXIT_NO, EXIT_OK, add_config_option, config_from_args, emit_json
from agent.clock import Clock, FixedClock, SystemClock
from agent.config import Config
from agent.errors import ConfigError, KeyFileError, UsageError
from agent.policy import Decision, GateContext, decide
from agent.protocol.keys import KeyRing, load_keyring
from agent.reasons import Reason
from agent.store.replay import ReplayCache
from agent.store.revocations import RevocationStore
from agent.timefmt import parse_instant


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


def gate_context(config: Config) -> GateContext:
    """The decision's view of the config (also used by the daemon)."""
    return GateContext(
        site=config.gate.site,
        gate=config.gate.id,
        accept_static=config.policy.accept_static,
        presentation_window_s=config.policy.presentation_window_s,
        clock_skew_s=config.policy.clock_skew_s,
    )


class _Verifier:
    def __init__(self, config: Config, clock: Clock) -> None:
        self.ctx = gate_context(config)
        self.clock = clock
        try:
            self.keyring: KeyRing = load_keyring(config.trust.keys_dir, config.trust.ops_keys_dir)
        except KeyFileError as exc:
            raise ConfigError(f"trust: {exc}", str(config.path)) from None
        self.replays = ReplayCache(config.state.dir, clock=clock)
        self.revocations = RevocationStore(config.state.dir, clock=clock, read_only=True)

    def decide(self, text: str) -> Decision:
        decision = decide(
            text, self.ctx, self.keyring, self.revocations, self.replays, self.clock.now()
        )
        if decision.granted and decision.replay_key and decision.replay_until is not None:
            self.replays.remember(decision.replay_key, decision.replay_until)
        return decision

    def decide_image(self, path: Path) -> Decision:
        texts = _decode_image(path)
        if not texts:
            return Decision(False, Reason.NO_CODE, detail=f"no QR code read in {path}")
        decisions = [self.decide(text) for text in texts]
        return next((d for d in decisions if d.granted), decisions[0])

    def close(self) -> None:
        self.replays.close()
        self.revocations.close()


def _verify(args: argparse.Namespace) -> int:
    if (args.text is None) == (not args.image):
        raise UsageError("give exactly one of TEXT, - (stdin) or --image FILE")
    config = config_from_args(args)
    clock: Clock = FixedClock(parse_instant(args.at)) if args.at else SystemClock()
    verifier = _Verifier(config, clock)
    all_granted = True
    try:
        for decision in _decisions(verifier, args):
            emit_json(decision.to_json())
            all_granted &= decision.granted
    finally:
        verifier.close()
    return EXIT_OK if all_granted else EXIT_NO


def _decisions(verifier: _Verifier, args: argparse.Namespace) -> Iterator[Decision]:
    if args.image:
        for path in args.image:
            yield verifier.decide_image(path)
    elif args.text == "-":
        for line in sys.stdin:
            yield verifier.decide(line.rstrip("\r\n"))
    else:
        yield verifier.decide(args.text)


def _decode_image(path: Path) -> list[str]:
    import cv2  # the image path only: keep `verify TEXT` light

    from hw.decoders import make_decoder

    if not path.is_file():
        raise UsageError(f"{path} does not exist or is not a file")
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise UsageError(f"{path} is not an image OpenCV can read (PNG, JPEG, WebP...)")
    texts: list[str] = make_decoder("auto").decode(gray).texts
    return texts
