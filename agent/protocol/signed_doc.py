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
from agent.protocol.keys import KeyRing, SigningKey, verify_signature

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


def peek_envelope(data: bytes, max_bytes: int) -> cose.Sign1:
    """The envelope's checked header (kid, typ) without copying the payload or checking
    the signature: the cheap first look at a big document before it may wait in a queue.

    The returned ``payload`` and ``signature`` are empty; ProtocolError(malformed) when
    the bytes are not one strict COSE_Sign1 array.
    """
    cbor_strict.check_well_formed(data, max_bytes=max_bytes, max_depth=1)
    if not data or data[0] != 0x84:  # array of 4
        raise ProtocolError(Reason.MALFORMED, "not a COSE_Sign1 array of 4 items")
    start, length = _bstr_head(data, 1)
    protected = bytes(data[start : start + length])
    unprotected = data[start + length]
    if unprotected != 0xA0:  # the empty map
        raise ProtocolError(Reason.MALFORMED, "COSE_Sign1 unprotected header must be empty")
    header = cose.from_decoded([protected, {}, b"", bytes(64)])
    return cose.Sign1(protected, header.kid, header.typ, b"", b"")


def authenticate(
    data: bytes, ops_keys: dict[str, bytes], expected_type: str, max_bytes: int
) -> str:
    """Check type, ops kid and signature whatever the key's validity dates (the controller
    checks those with the decision clock); return the kid. ProtocolError otherwise.

    Runs on paho's thread before a message may wait in a queue, so it never decodes the
    payload: the strict envelope is walked in place and the RFC 9052 Sig_structure is
    built from ``data``'s own bytes (one copy of the payload, the least Ed25519 needs).
    """
    envelope = peek_envelope(data, max_bytes)
    _check_kid_and_type(envelope, ops_keys, expected_type)
    signed, signature = _signed_bytes(data)
    if not verify_signature(ops_keys[envelope.kid], signed, signature):
        raise ProtocolError(
            Reason.BAD_SIGNATURE, f"signature does not match ops key {envelope.kid!r}"
        )
    return envelope.kid


_SIG1_HEAD = b"\x84\x6aSignature1"  # array of 4, text "Signature1"


def _signed_bytes(data: bytes) -> tuple[bytes, bytes]:
    """(Sig_structure, signature) of a COSE_Sign1 that passed :func:`peek_envelope`.

    The strict walker has checked that every head is minimal, so the protected and payload
    byte strings, heads included, are copied as they are: the result equals
    ``cose.sig_structure(protected, payload)``.
    """
    start, length = _bstr_head(data, 1, "protected header")
    protected_end = start + length  # then 0xA0, the empty unprotected map (checked)
    payload_start, payload_length = _bstr_head(data, protected_end + 1, "payload")
    payload_end = payload_start + payload_length
    if data[payload_end : payload_end + 2] != b"\x58\x40" or payload_end + 66 != len(data):
        raise ProtocolError(Reason.MALFORMED, "COSE_Sign1 signature is not 64 bytes")
    view = memoryview(data)
    signed = b"".join((_SIG1_HEAD, view[1:protected_end], b"\x40",
                       view[protected_end + 1 : payload_end]))
    return signed, bytes(view[payload_end + 2 :])


def _check_kid_and_type(
    envelope: cose.Sign1, ops_keys: dict[str, bytes], expected_type: str
) -> None:
    if envelope.typ != expected_type:
        raise ProtocolError(
            Reason.MALFORMED, f"document type is {envelope.typ!r}, expected {expected_type!r}"
        )
    if envelope.kid not in ops_keys:
        raise ProtocolError(Reason.UNKNOWN_KEY, f"no trusted ops key {envelope.kid!r}")


def _bstr_head(data: bytes, pos: int, what: str = "protected header") -> tuple[int, int]:
    """(content start, length) of the byte string whose head is at ``pos`` (well formed)."""
    initial = data[pos]
    if initial >> 5 != 2:
        raise ProtocolError(Reason.MALFORMED, f"COSE_Sign1 {what} is not a byte string")
    info = initial & 0x1F
    if info < 24:
        return pos + 1, info
    width = 1 << (info - 24)
    return pos + 1 + width, int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
