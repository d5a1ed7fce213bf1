"""Signed time messages from the centre (``gate/v1/time``), for gates without NTP.

A signed document of type ``gate.time.v1`` (ops key), body ``{"v": 1, "t_ms": int}``: the
centre's clock in Unix milliseconds when it signed. Broadcast, so it carries no nonce;
``agent.gate.timekeeper`` only uses one that is newer than every time it has accepted
before and not below its persisted time floor, so a replayed old message cannot move
the clock back (see docs/protocol.md, "Time").
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.errors import ProtocolError
from agent.core.reasons import Reason
from agent.protocol.keys import KeyRing, SigningKey
from agent.protocol.signed_doc import open_document, sign_document

TIME_TYPE = "gate.time.v1"
MAX_TIME_BYTES = 512


@dataclass(frozen=True)
class TimeMessage:
    t: float  # centre time, Unix seconds


def sign_time(t: float, key: SigningKey, kid: str) -> bytes:
    return sign_document(TIME_TYPE, {"v": 1, "t_ms": round(t * 1000)}, key, kid)


def parse_time(data: bytes, keyring: KeyRing, now: float) -> TimeMessage:
    """Verify a time message (ProtocolError with the reason); ``now`` picks valid keys."""
    body = open_document(data, keyring, TIME_TYPE, now, max_bytes=MAX_TIME_BYTES)
    t_ms = body.get("t_ms")
    if body.get("v") != 1 or set(body) != {"v", "t_ms"}:
        raise ProtocolError(Reason.MALFORMED, "time message body is not {v: 1, t_ms}")
    if not isinstance(t_ms, int) or isinstance(t_ms, bool) or t_ms <= 0:
        raise ProtocolError(Reason.MALFORMED, "time message t_ms is not a positive integer")
    return TimeMessage(t_ms / 1000)
