"""Signed documents from the centre's operations: revocation lists, commands, time.

Each is a COSE_Sign1 made by an *ops* key (never an issuer key) whose protected header
carries ``typ`` naming the document type, so a document signed for one purpose can
never be replayed as another. The payload is a CBOR map (text keys) chosen by the
document type.

Strictness: the envelope always goes through the strict walker (the payload is a byte
string, a leaf, so this is cheap even for a list of a million entries). Payloads up to
``STRICT_BODY_LIMIT`` bytes are walked strictly too. A larger payload (only full
revocation lists get there) is decoded by cbor2 directly, but only after its signature
checked out: the centre made those exact bytes, and the Python walker would cost seconds.
"""

from __future__ import annotations

from typing import Any

import cbor2

from agent.core.errors import ProtocolError
from agent.core.reasons import Reason
from agent.protocol import cbor_strict, cose
from agent.protocol.keys import KeyRing, SigningKey

STRICT_BODY_LIMIT = 256 * 1024
DEFAULT_MAX_BYTES = 64 * 1024


def sign_document(doc_type: str, body: dict[str, Any], key: SigningKey, kid: str) -> bytes:
    """COSE_Sign1 bytes of ``body`` with ``typ`` = ``doc_type``, signed by an ops key."""
    return cose.encode(cose.sign1(cbor_strict.dumps(body), key, kid, typ=doc_type))


def open_document(
    data: bytes,
    keyring: KeyRing,
    expected_type: str,
    now: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, Any]:
    """Check size, shape, type, ops key and signature; return the body map.

    Raises ProtocolError with reason ``malformed`` (size, shape, wrong type),
    ``unsupported_version`` (alg, crit), ``unknown_key`` or ``bad_signature``.
    """
    envelope = cose.from_decoded(
        cbor_strict.loads_strict(bytes(data), max_bytes=max_bytes, max_depth=1)
    )
    if envelope.typ != expected_type:
        raise ProtocolError(
            Reason.MALFORMED,
            f"document type is {envelope.typ!r}, expected {expected_type!r}",
        )
    key = keyring.get(envelope.kid, "ops", now)
    if not envelope.verify(key.public):
        raise ProtocolError(
            Reason.BAD_SIGNATURE, f"signature does not match ops key {envelope.kid!r}"
        )
    body = _decode_body(envelope.payload)
    if not isinstance(body, dict) or not all(isinstance(k, str) for k in body):
        raise ProtocolError(Reason.MALFORMED, "document body is not a map with text keys")
    return body


def _decode_body(payload: bytes) -> Any:
    if len(payload) <= STRICT_BODY_LIMIT:
        return cbor_strict.loads_strict(payload, max_bytes=STRICT_BODY_LIMIT, max_depth=6)
    try:
        return cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ProtocolError(Reason.MALFORMED, f"document body does not decode: {exc}") from None
