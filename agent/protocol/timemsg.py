"""Signed time messages from the centre (``gate/v1/time``), for gates without NTP.

A signed document of type ``gate.time.v1`` (ops key), body ``{"v": 1, "t_ms": int}``: the
centre's clock in Unix milliseconds when it signed. A broadcast on ``gate/v1/time`` carries
no nonce; the centre's answer to one gate's request (``.../time/request`` with the gate's
nonce) carries ``"nonce"`` back on ``gate/v1/{site}/{gate}/time``, which proves it fresh.
``agent.gate.timekeeper`` decides what a message may move (see docs/protocol.md, "Time").
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.bounds import MAX_TIME_BYTES as MAX_TIME_BYTES  # re-exported
from agent.core.bounds import time_problem
from agent.core.errors import ProtocolError
from agent.core.reasons import Reason
from agent.protocol.keys import KeyRing, SigningKey
from agent.protocol.signed_doc import open_document, sign_document

TIME_TYPE = "gate.time.v1"


NONCE_HEX_CHARS = 32  # a gate's time request nonce: 16 random bytes, lower-case hex


@dataclass(frozen=True)
class TimeMessage:
    t: float  # centre time, Unix seconds
    nonce: str | None = None  # the requesting gate's nonce; None on a broadcast


def sign_time(t: float, key: SigningKey, kid: str, nonce: str | None = None) -> bytes:
    """A signed time message; ``nonce`` answers one gate's request."""
    problem = time_problem(t, "time")
    if problem:
        raise ValueError(problem)
    body: dict[str, object] = {"v": 1, "t_ms": round(t * 1000)}
    if nonce is not None:
        if not is_nonce(nonce):
            raise ValueError(f"time nonce {nonce!r} is not {NONCE_HEX_CHARS} lower-case hex")
        body["nonce"] = nonce
    return sign_document(TIME_TYPE, body, key, kid)


def is_nonce(value: object) -> bool:
    return (isinstance(value, str) and len(value) == NONCE_HEX_CHARS
            and all(c in "0123456789abcdef" for c in value))


def parse_time(data: bytes, keyring: KeyRing, now: float) -> TimeMessage:
    """Verify a time message (ProtocolError with the reason); ``now`` picks valid keys."""
    body = open_document(data, keyring, TIME_TYPE, now, max_bytes=MAX_TIME_BYTES)
    t_ms = body.get("t_ms")
    if body.get("v") != 1 or not {"v", "t_ms"} <= set(body) <= {"v", "t_ms", "nonce"}:
        raise ProtocolError(Reason.MALFORMED, "time message body is not {v: 1, t_ms[, nonce]}")
    if not isinstance(t_ms, int) or isinstance(t_ms, bool) or t_ms <= 0:
        raise ProtocolError(Reason.MALFORMED, "time message t_ms is not a positive integer")
    problem = time_problem(t_ms / 1000, "time message t_ms/1000")
    if problem:
        raise ProtocolError(Reason.MALFORMED, problem)
    nonce = body.get("nonce")
    if nonce is not None and not is_nonce(nonce):
        raise ProtocolError(Reason.MALFORMED, "time message nonce is not 32 lower-case hex")
    return TimeMessage(t_ms / 1000, nonce)
