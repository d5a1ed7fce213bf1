"""``gate-agent verify``: run the gate's decision on text, stdin lines or an image.

The same pipeline the daemon uses: the config's trusted keys and policy, the state
dir's revocation list (read only) and replay cache (a granted live code is remembered,
so showing it again is ``replayed``, also across calls). The clock is taken as trusted
(``--at`` pins it); the daemon's time-floor checks do not apply here.

Only one process writes the state folder. verify takes the daemon's writer lock while
it runs; when the daemon (or another verify) holds it, verify checks the replay cache
read-only and says so on stderr: a live code granted then is remembered only for the
rest of this run, never written behind the daemon's back.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.cli.common import EXIT_NO, EXIT_OK, add_config_option, config_from_args, fail
from agent.core.clock import Clock, FixedClock, SystemClock
from agent.core.config import Config
from agent.core.errors import ConfigError, KeyFileError, StateError, StateInUseError, UsageError
from agent.core.output import emit_json
from agent.core.reasons import Reason
from agent.core.timefmt import parse_instant
from agent.gate.policy import Decision, GateContext, decide, revocations_stale
from agent.protocol.keys import KeyRing, load_keyring
from agent.store.files import WriterLock, ensure_dir
from agent.store.owner import become_state_owner
from agent.store.replay import ReplayCache
from agent.store.revocations import LOCK, RevocationStore

if TYPE_CHECKING:
    from hw.decoders import Decoder


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
        self.max_list_age_h = config.policy.revocations_max_age_h
        self.deny_on_stale = config.policy.on_stale_revocations == "deny"
        self._decoder: Decoder | None = None
        try:
            self.keyring: KeyRing = load_keyring(config.trust.keys_dir, config.trust.ops_keys_dir)
        except KeyFileError as exc:
            raise ConfigError(f"trust: {exc}", str(config.path)) from None
        self._lock = _writer_lock(config.state.dir)
        try:
            self.replays = ReplayCache(
                config.state.dir, clock=clock, read_only=self._lock is None
            )
            self.revocations = RevocationStore(config.state.dir, clock=clock, read_only=True)
        except BaseException:
            self._release()
            raise

    def decide(self, text: str) -> Decision:
        now = self.clock.now()
        decision = decide(text, self.ctx, self.keyring, self.revocations, self.replays, now)
        stale = revocations_stale(self.revocations.issued_at, now, self.max_list_age_h)
        if decision.granted and self.deny_on_stale and stale:
            # The daemon's rule ([policy] on_stale_revocations = "deny"), applied the same way.
            return Decision(False, Reason.REVOCATIONS_STALE, decision.sub, decision.cti,
                            "the revocation list is older than [policy] revocations_max_age_h")
        if decision.granted and decision.replay_key and decision.replay_until is not None:
            self.replays.remember(decision.replay_key, decision.replay_until)
        return decision

    def decide_image(self, path: Path) -> Decision:
        texts = self._decode_image(path)
        if not texts:
            return Decision(False, Reason.NO_CODE, detail=f"no QR code read in {path}")
        decisions = [self.decide(text) for text in texts]
        return next((d for d in decisions if d.granted), decisions[0])

    def _decode_image(self, path: Path) -> list[str]:
        import cv2  # the image path only: keep `verify TEXT` light

        if not path.is_file():
            raise UsageError(f"{path} does not exist or is not a file")
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise UsageError(f"{path} is not an image OpenCV can read (PNG, JPEG, WebP...)")
        if self._decoder is None:
            from hw.decoders import make_decoder

            # Single images: the fallback decoder runs on every one, never rate-limited.
            self._decoder = make_decoder("auto", fallback_interval_s=0)
        texts: list[str] = self._decoder.decode(gray).texts
        return texts

    def close(self) -> None:
        self.replays.close()
        self.revocations.close()
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _writer_lock(state_dir: Path) -> WriterLock | None:
    """The state folder's writer lock (the daemon's), or None when verify may not write."""
    try:
        ensure_dir(state_dir)
        return WriterLock(state_dir / LOCK, "the gate state")
    except StateInUseError:
        why = f"the gate-agent daemon is using {state_dir}"
    except StateError as exc:
        why = str(exc)
    fail(
        f"gate-agent verify: {why}: the replay cache is checked read-only "
        "(a live code granted here is not remembered for later calls or the daemon)"
    )
    return None


def _verify(args: argparse.Namespace) -> int:
    if (args.text is None) == (not args.image):
        raise UsageError("give exactly one of TEXT, - (stdin) or --image FILE")
    config = config_from_args(args)
    become_state_owner(config.state.dir)
    clock: Clock = (
        FixedClock(parse_instant(args.at, require_zone=True)) if args.at else SystemClock()
    )
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

