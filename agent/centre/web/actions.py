"""What an operator changes from the console: revocations and signed gate commands.

Revocations go through the centre's own revocation code (``store.revocations.change``:
a new version, signed, checked against the gates' ops trust, with the history row), and
are published on the centre's broker session; when that session is down the change is
stored and the service's sweep publishes it. Commands are built and signed with the
centre's ops key (``agent.protocol.command``), published on the gate's ``cmd`` topic and
recorded; the gate's ``cmd/result`` lands in the same row (``records.record_result``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from agent.centre.store import revocations
from agent.centre.store.db import Database
from agent.centre.web import records
from agent.protocol.command import MAX_RESEND, MODES, make_command, sign_command
from agent.protocol.keys import KeyRing, SigningKey
from agent.protocol.revocation import RevocationEntry
from agent.sync.topics import REVOCATIONS_DELTA, REVOCATIONS_FULL, GateTopics

Publish = Callable[[str, bytes, bool], bool]  # (topic, payload, retain) -> queued
COMMAND_TTL_S = 120
MAX_MODE_S = 7 * 24 * 3600


@dataclass(frozen=True)
class Signer:
    """The centre's ops key and the gates' ops trust (to check a list before it goes)."""

    key: SigningKey
    kid: str
    trust: KeyRing


def change_courier(db: Database, signer: Signer, publish: Publish,
                   action: Literal["revoke", "unrevoke"], sub: str, reason: str | None,
                   who: str, now: float, before: int | None = None
                   ) -> tuple[revocations.Change, bool]:
    """Revoke a courier's credentials (all, or those issued before ``before``) or lift
    it; (change, published now). NothingToChange when there is nothing to do."""
    entry = RevocationEntry("sub", sub, before)
    change = revocations.change(db, action, entry, reason=reason, who=who, key=signer.key,
                                kid=signer.kid, trust=signer.trust, now=now)
    return change, publish_pending(db, publish, now)


def publish_pending(db: Database, publish: Publish, now: float) -> bool:
    """Unpublished deltas then the retained full list; True when all were queued."""
    pending = revocations.unpublished(db)
    full = revocations.latest_full(db)
    if not pending or full is None:
        return True
    for _version, delta in pending:
        if not publish(REVOCATIONS_DELTA, delta, False):
            return False
    if not publish(REVOCATIONS_FULL, full[1], True):
        return False
    revocations.mark_published(db, pending[-1][0], now)
    return True


def command_args(action: str, form: dict[str, str]) -> dict[str, Any]:
    """The validated arguments of a console command; ValueError says what is wrong."""
    if action == "open":
        return {}
    if action == "mode":
        mode = form.get("mode", "")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        minutes = form.get("minutes", "").strip()
        if not minutes:
            return {"mode": mode}
        if not minutes.isdigit() or not 1 <= int(minutes) * 60 <= MAX_MODE_S:
            raise ValueError("the duration must be whole minutes, 1 to 10080 (a week)")
        if mode == "normal":
            raise ValueError("normal mode has no duration")
        return {"mode": mode, "duration_s": int(minutes) * 60}
    if action == "resend":
        first, last = form.get("first", "").strip(), form.get("last", "").strip()
        if not (first.isdigit() and last.isdigit()) or not 1 <= int(first) <= int(last):
            raise ValueError("the seq range must be two whole numbers, first <= last")
        if int(last) - int(first) + 1 > MAX_RESEND:
            raise ValueError(f"one resend asks for at most {MAX_RESEND} entries")
        return {"first": int(first), "last": int(last)}
    raise ValueError(f"unknown action {action!r}: open, mode or resend")


def send_command(db: Database, signer: Signer, publish: Publish, site: str, gate: str,
                 action: str, args: dict[str, Any], who: str, now: float) -> tuple[str, bool]:
    """Sign, publish and record one command; (command id, published now)."""
    seqs = (args["first"], args["last"]) if action == "resend" else None
    cmd = make_command(action, f"{site}/{gate}", now=now, ttl_s=COMMAND_TTL_S,
                       mode=args.get("mode"), duration_s=args.get("duration_s"), seqs=seqs)
    published = publish(GateTopics(site, gate).cmd, sign_command(cmd, signer.key, signer.kid),
                        False)
    records.record_command(db, cmd_id=cmd.id, site=site, gate=gate, action=action, args=args,
                           who=who, published=published, now=now)
    return cmd.id, published
