"""Signed commands from centre staff to one gate (or every gate of a site).

A command is a signed document (``agent.protocol.signed_doc``) of type ``gate.command.v1``,
signed by an ops key. Its body (CBOR map):

    v       1
    id      unique text id (the replay key; gatectl uses a UUID4 hex)
    target  "SITE/GATE", or "SITE/*" for every gate of a site
    action  "open" | "mode" | "resync" | "status" | "resend"
    iat     issued at, Unix seconds
    exp     expiry, Unix seconds; at most MAX_TTL_S after iat
    mode    action "mode" only: "normal" | "lockdown" | "free"
    for     action "mode" only, optional: seconds until the gate returns to normal
    from    action "resend" only: first event seq to send again
    to      action "resend" only: last event seq (inclusive; at most MAX_RESEND rows)

A gate accepts a command once: ``parse_command`` refuses (``CommandRefused.reason``)
``malformed`` (not a signed command, bad body), ``unknown_key``, ``bad_signature``,
``wrong_target``, ``not_yet_valid``, ``expired`` and ``replayed``; the caller remembers
``replay_key`` until ``expires_at`` after accepting it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from agent.core.bounds import MAX_COMMAND_BYTES as MAX_COMMAND_BYTES  # re-exported
from agent.core.bounds import MAX_MODE_S, MAX_SEQ
from agent.core.errors import ProtocolError
from agent.core.ids import target_problem
from agent.protocol import cbor_strict, cose
from agent.protocol.keys import KeyRing, SigningKey
from agent.protocol.signed_doc import open_document, sign_document

COMMAND_TYPE = "gate.command.v1"
ACTIONS = ("open", "mode", "resync", "status", "resend")
MODES = ("normal", "lockdown", "free")
MAX_TTL_S = 24 * 3600
CLOCK_SKEW_S = 60  # a command issued this far in our future is still taken
MAX_RESEND = 10_000  # events one "resend" command may ask for (bounds the burst)

Action = Literal["open", "mode", "resync", "status", "resend"]

MALFORMED = "malformed"
UNKNOWN_KEY = "unknown_key"
BAD_SIGNATURE = "bad_signature"
WRONG_TARGET = "wrong_target"
NOT_YET_VALID = "not_yet_valid"
EXPIRED = "expired"
REPLAYED = "replayed"


class CommandRefused(ProtocolError):
    """A command the gate will not execute; ``cmd_id`` is set when it could be read."""

    def __init__(self, reason: str, detail: str, cmd_id: str | None = None) -> None:
        super().__init__(reason, detail)
        self.cmd_id = cmd_id


class SeenIds(Protocol):
    """Replay memory for command ids (``agent.store.ReplayCache`` fits)."""

    def seen(self, key: str) -> bool: ...


@dataclass(frozen=True)
class Command:
    id: str
    site: str
    gate: str  # "*" for every gate of the site
    action: Action
    issued_at: int
    expires_at: int
    mode: str | None = None
    duration_s: int | None = None
    seq_from: int | None = None  # "resend": the centre saw a gap in these event seqs
    seq_to: int | None = None

    @property
    def target(self) -> str:
        return f"{self.site}/{self.gate}"

    @property
    def replay_key(self) -> str:
        return replay_key(self.id)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "v": 1, "id": self.id, "target": self.target, "action": self.action,
            "iat": self.issued_at, "exp": self.expires_at,
        }
        if self.mode is not None:
            body["mode"] = self.mode
        if self.duration_s is not None:
            body["for"] = self.duration_s
        if self.seq_from is not None:
            body["from"] = self.seq_from
        if self.seq_to is not None:
            body["to"] = self.seq_to
        return body


def replay_key(cmd_id: str) -> str:
    return f"cmd:{cmd_id}"


def make_command(
    action: str,
    target: str,
    *,
    now: float,
    ttl_s: int = 60,
    mode: str | None = None,
    duration_s: int | None = None,
    cmd_id: str | None = None,
    seqs: tuple[int, int] | None = None,
) -> Command:
    """Build a command for ``SITE/GATE``; ValueError says what is wrong."""
    site, gate = split_target(target)
    cmd = Command(
        id=cmd_id or uuid.uuid4().hex,
        site=site,
        gate=gate,
        action=cast(Action, action),
        issued_at=int(now),
        expires_at=int(now) + ttl_s,
        mode=mode,
        duration_s=duration_s,
        seq_from=seqs[0] if seqs else None,
        seq_to=seqs[1] if seqs else None,
    )
    problem = _check_body(cmd)
    if problem:
        raise ValueError(problem)
    return cmd


def split_target(target: str) -> tuple[str, str]:
    """``SITE/GATE`` or ``SITE/*``, each part an identifier (agent.core.ids)."""
    problem = target_problem(target)
    if problem:
        raise ValueError(problem)
    site, _, gate = target.partition("/")
    return site, gate


def sign_command(cmd: Command, key: SigningKey, kid: str) -> bytes:
    return sign_document(COMMAND_TYPE, cmd.body(), key, kid)


def parse_command(
    data: bytes, keyring: KeyRing, site: str, gate: str, now: float, seen_ids: SeenIds
) -> Command:
    """Verify a command for this gate; CommandRefused with the reason otherwise."""
    cmd_id = peek_command_id(data)
    try:
        body = open_document(data, keyring, COMMAND_TYPE, now, max_bytes=MAX_COMMAND_BYTES)
    except ProtocolError as exc:
        reason = exc.reason if exc.reason in (UNKNOWN_KEY, BAD_SIGNATURE) else MALFORMED
        raise CommandRefused(reason, exc.detail, cmd_id) from None
    cmd = _from_body(body, cmd_id)
    if cmd.site != site or cmd.gate not in (gate, "*"):
        raise CommandRefused(WRONG_TARGET, f"command is for {cmd.target}, this is {site}/{gate}",
                             cmd.id)
    if cmd.issued_at > now + CLOCK_SKEW_S:
        raise CommandRefused(NOT_YET_VALID, "command issued in the future: check clocks", cmd.id)
    if now >= cmd.expires_at:
        raise CommandRefused(EXPIRED, f"command expired {int(now - cmd.expires_at)} s ago",
                             cmd.id)
    if seen_ids.seen(cmd.replay_key):
        raise CommandRefused(REPLAYED, "command id was already received", cmd.id)
    return cmd


def peek_command_id(data: bytes) -> str | None:
    """The id of a command whose signature is not checked yet, for refusal reports only."""
    try:
        envelope = cose.from_decoded(
            cbor_strict.loads_strict(bytes(data), max_bytes=MAX_COMMAND_BYTES, max_depth=1)
        )
        body = cbor_strict.loads_strict(envelope.payload, max_bytes=MAX_COMMAND_BYTES,
                                        max_depth=2)
    except (ProtocolError, ValueError, TypeError):
        return None
    cmd_id = body.get("id") if isinstance(body, dict) else None
    return cmd_id[:64] if isinstance(cmd_id, str) else None


def _from_body(body: dict[str, Any], cmd_id: str | None) -> Command:
    def field(name: str, kind: type, required: bool = True) -> Any:
        value = body.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CommandRefused(MALFORMED, f"command field {name!r} missing or not "
                                 f"{kind.__name__}", cmd_id)
        return value

    unknown = set(body) - {"v", "id", "target", "action", "iat", "exp", "mode", "for",
                           "from", "to"}
    if unknown:
        raise CommandRefused(MALFORMED, f"unknown command fields {sorted(unknown)}", cmd_id)
    if body.get("v") != 1:
        raise CommandRefused(MALFORMED, f"command version {body.get('v')!r} is not 1", cmd_id)
    try:
        site, gate = split_target(field("target", str))
    except ValueError as exc:
        raise CommandRefused(MALFORMED, str(exc), cmd_id) from None
    cmd = Command(
        id=field("id", str),
        site=site,
        gate=gate,
        action=field("action", str),
        issued_at=field("iat", int),
        expires_at=field("exp", int),
        mode=field("mode", str, required=False),
        duration_s=field("for", int, required=False),
        seq_from=field("from", int, required=False),
        seq_to=field("to", int, required=False),
    )
    problem = _check_body(cmd)
    if problem:
        raise CommandRefused(MALFORMED, problem, cmd.id)
    return cmd


def _check_body(cmd: Command) -> str | None:
    if not 1 <= len(cmd.id) <= 64:
        return "command id must be 1-64 characters"
    if cmd.action not in ACTIONS:
        return f"action {cmd.action!r} is not one of {', '.join(ACTIONS)}"
    if cmd.action == "mode":
        if cmd.mode not in MODES:
            return f"mode {cmd.mode!r} is not one of {', '.join(MODES)}"
        if cmd.duration_s is not None and not 0 < cmd.duration_s <= MAX_MODE_S:
            return (f"mode duration must be 1 s to {MAX_MODE_S // 86400} days, "
                    f"got {cmd.duration_s} s")
    elif cmd.mode is not None or cmd.duration_s is not None:
        return f"action {cmd.action!r} takes no mode or duration"
    if cmd.action == "resend":
        first, last = cmd.seq_from, cmd.seq_to
        if first is None or last is None or not 1 <= first <= last <= MAX_SEQ:
            return f"resend needs event seqs 1 <= from <= to <= {MAX_SEQ}"
        if last - first + 1 > MAX_RESEND:
            return f"resend asks for {last - first + 1} events; at most {MAX_RESEND} per command"
    elif cmd.seq_from is not None or cmd.seq_to is not None:
        return f"action {cmd.action!r} takes no from/to event seqs"
    if not 0 < cmd.expires_at - cmd.issued_at <= MAX_TTL_S:
        return f"command lifetime must be 1 s to {MAX_TTL_S} s"
    return None
