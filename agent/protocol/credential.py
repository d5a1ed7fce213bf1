"""The courier credential: a CWT (RFC 8392) in a COSE_Sign1 signed by an issuer key.

Claims (integer keys keep the QR small): iss 1, sub 2, exp 4, nbf 5, iat 6, cti 7
(8 random bytes), cnf 8 (RFC 8747: ``{1: COSE_Key}`` with the phone's Ed25519 key,
``{1: 1 (OKP), -1: 6 (Ed25519), -2: x}``) and scope 9 (a list of ``site`` or
``site/gate`` patterns; no wildcards). Unknown claims are refused, not ignored.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.core.bounds import MAX_TIME as BOUNDS_MAX_TIME
from agent.core.errors import ProtocolError, UsageError
from agent.core.ids import id_problem, scope_problem
from agent.core.reasons import Reason
from agent.protocol import cbor_strict, cose, qrtext
from agent.protocol.keys import SigningKey, is_acceptable_public_key

CLAIM_ISS, CLAIM_SUB, CLAIM_EXP, CLAIM_NBF, CLAIM_IAT = 1, 2, 4, 5, 6
CLAIM_CTI, CLAIM_CNF, CLAIM_SCOPE = 7, 8, 9
_REQUIRED = (CLAIM_ISS, CLAIM_SUB, CLAIM_EXP, CLAIM_NBF, CLAIM_IAT, CLAIM_CTI, CLAIM_SCOPE)
_KNOWN = frozenset((*_REQUIRED, CLAIM_CNF))
COSE_KEY_KTY, COSE_KEY_CRV, COSE_KEY_X = 1, -1, -2
KTY_OKP, CRV_ED25519 = 1, 6
CNF_COSE_KEY = 1
CTI_BYTES = 8
MAX_CREDENTIAL_BYTES = 600
MAX_SCOPES = 16
_MAX_TEXT = 64
MAX_TIME = BOUNDS_MAX_TIME  # Unix seconds bound of every time claim (2100, agent.core.bounds)


@dataclass(frozen=True)
class Credential:
    """A credential's claims and its signed envelope (not yet verified)."""

    envelope: cose.Sign1
    iss: str
    sub: str
    iat: int
    nbf: int
    exp: int
    cti: str  # lower-case hex
    scope: tuple[str, ...]
    holder: bytes | None  # the phone's Ed25519 public key (cnf), if bound

    @property
    def kid(self) -> str:
        return self.envelope.kid

    def covers(self, site: str, gate: str) -> bool:
        """True when a scope pattern names this site (all gates) or this very gate."""
        here = f"{site}/{gate}"
        return any(pattern in (site, here) for pattern in self.scope)


def check_scope(pattern: str) -> str:
    """``site`` or ``site/gate``, each part an identifier (agent.core.ids)."""
    problem = scope_problem(pattern)
    if problem:
        raise UsageError(f"{problem}: give --scope SITE or SITE/GATE")
    return pattern


def issue_credential(
    key: SigningKey,
    *,
    kid: str,
    sub: str,
    scope: Sequence[str],
    not_before: float,
    ttl_s: float,
    now: float,
    holder_pub: bytes | None = None,
    iss: str | None = None,
) -> str:
    """Sign a credential and return its QR text (``QM1:...``)."""
    sub_problem = id_problem(sub, "subject")
    if sub_problem:
        raise UsageError(f"{sub_problem}: give --sub a courier id")
    if not scope:
        raise UsageError("a credential needs at least one --scope SITE or SITE/GATE")
    if len(scope) > MAX_SCOPES:
        raise UsageError(f"at most {MAX_SCOPES} scopes per credential, got {len(scope)}")
    if ttl_s < 1:
        raise UsageError(f"ttl must be at least one second, got {ttl_s}")
    if not (not_before >= 0 and not_before + ttl_s < MAX_TIME):
        raise UsageError("validity ends too far in the future (or starts before 1970): "
                         "use a shorter --ttl")
    if holder_pub is not None and not is_acceptable_public_key(holder_pub):
        raise UsageError("holder public key is of small order or non-canonical: make a new one")
    nbf = int(not_before)
    claims: dict[int, Any] = {
        CLAIM_ISS: iss if iss is not None else kid,
        CLAIM_SUB: sub,
        CLAIM_EXP: nbf + int(ttl_s),
        CLAIM_NBF: nbf,
        CLAIM_IAT: int(now),
        CLAIM_CTI: os.urandom(CTI_BYTES),
        CLAIM_SCOPE: [check_scope(p) for p in scope],
    }
    if holder_pub is not None:
        cose_key = {COSE_KEY_KTY: KTY_OKP, COSE_KEY_CRV: CRV_ED25519, COSE_KEY_X: holder_pub}
        claims[CLAIM_CNF] = {CNF_COSE_KEY: cose_key}
    envelope = cose.sign1(cbor_strict.dumps(claims), key, kid)
    return qrtext.encode(qrtext.PREFIX_CREDENTIAL, cose.encode(envelope))


def read_credential(text: str) -> Credential:
    """Parse (not verify) ``QM1:`` text, as ``gatectl present`` needs it."""
    prefix, data = qrtext.decode(text)
    if prefix != qrtext.PREFIX_CREDENTIAL:
        raise ProtocolError(Reason.MALFORMED, f"expected a credential ({qrtext.PREFIX_CREDENTIAL})")
    obj = cbor_strict.loads_strict(data, max_bytes=MAX_CREDENTIAL_BYTES, max_depth=1)
    return credential_from_cose(obj)


def credential_from_cose(obj: Any) -> Credential:
    """Claims of a decoded COSE_Sign1 array, every type and bound checked."""
    envelope = cose.from_decoded(obj)
    claims = cbor_strict.loads_strict(
        envelope.payload, max_bytes=MAX_CREDENTIAL_BYTES, max_depth=4
    )
    if not isinstance(claims, dict):
        raise ProtocolError(Reason.MALFORMED, "credential claims are not a map")
    missing = [k for k in _REQUIRED if k not in claims]
    if missing:
        raise ProtocolError(Reason.MALFORMED, f"credential lacks claims {missing}")
    unknown = set(claims) - _KNOWN
    if unknown:
        names = sorted(map(str, unknown))
        raise ProtocolError(Reason.MALFORMED, f"credential has unknown claims {names}")
    cti = claims[CLAIM_CTI]
    if not isinstance(cti, bytes) or not 8 <= len(cti) <= 32:
        raise ProtocolError(Reason.MALFORMED, "credential cti is not 8-32 bytes")
    return Credential(
        envelope=envelope,
        iss=_text(claims[CLAIM_ISS], "iss"),
        sub=_sub(claims[CLAIM_SUB]),
        iat=_time(claims[CLAIM_IAT], "iat"),
        nbf=_time(claims[CLAIM_NBF], "nbf"),
        exp=_time(claims[CLAIM_EXP], "exp"),
        cti=cti.hex(),
        scope=_scopes(claims[CLAIM_SCOPE]),
        holder=_holder(claims.get(CLAIM_CNF)),
    )


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= _MAX_TEXT:
        raise ProtocolError(Reason.MALFORMED, f"credential {name} is not 1-{_MAX_TEXT} characters")
    return value


def _sub(value: Any) -> str:
    problem = id_problem(value, "credential sub")
    if problem:
        raise ProtocolError(Reason.MALFORMED, problem)
    return str(value)


def _time(value: Any, name: str) -> int:
    if type(value) is not int or not 0 <= value < MAX_TIME:
        raise ProtocolError(Reason.MALFORMED, f"credential {name} is not a Unix time")
    return value


def _scopes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_SCOPES:
        raise ProtocolError(Reason.MALFORMED, f"credential scope is not a list of 1-{MAX_SCOPES}")
    for pattern in value:
        problem = scope_problem(pattern)
        if problem:
            raise ProtocolError(Reason.MALFORMED, f"credential scope: {problem}")
    return tuple(value)


def _holder(value: Any) -> bytes | None:
    if value is None:
        return None
    expected = "credential cnf is not {1: {1: 1, -1: 6, -2: 32-byte key}}"
    if not isinstance(value, dict) or set(value) != {CNF_COSE_KEY}:
        raise ProtocolError(Reason.MALFORMED, expected)
    key = value[CNF_COSE_KEY]
    if (
        not isinstance(key, dict)
        or set(key) != {COSE_KEY_KTY, COSE_KEY_CRV, COSE_KEY_X}
        or type(key[COSE_KEY_KTY]) is not int
        or key[COSE_KEY_KTY] != KTY_OKP
        or type(key[COSE_KEY_CRV]) is not int
        or key[COSE_KEY_CRV] != CRV_ED25519
        or not isinstance(key[COSE_KEY_X], bytes)
        or len(key[COSE_KEY_X]) != 32
    ):
        raise ProtocolError(Reason.MALFORMED, expected)
    return bytes(key[COSE_KEY_X])
