"""COSE_Sign1 (RFC 9052) framed with cbor2, signed and checked by libsodium.

Only what the gate needs: alg EdDSA (-8), ``kid`` in the protected header, an optional
``typ`` (label 16, RFC 9596) naming the document type, nothing in the unprotected
header. Any other header, ``crit`` included, is refused: the gate never accepts a
structure whose meaning it cannot fully check. The COSE array is sent untagged; the QR
prefix or the document ``typ`` says what it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.core.errors import ProtocolError
from agent.core.reasons import Reason
from agent.protocol import cbor_strict
from agent.protocol.keys import SigningKey, sign, verify_signature

ALG_EDDSA = -8
HDR_ALG, HDR_CRIT, HDR_KID, HDR_TYP = 1, 2, 4, 16
_KNOWN_HEADERS = frozenset({HDR_ALG, HDR_KID, HDR_TYP})
MAX_PROTECTED_BYTES = 128


@dataclass(frozen=True)
class Sign1:
    """A parsed, not yet verified, COSE_Sign1."""

    protected: bytes  # the exact bytes that were signed
    kid: str
    typ: str | None
    payload: bytes
    signature: bytes

    def to_list(self) -> list[Any]:
        return [self.protected, {}, self.payload, self.signature]

    def verify(self, public: bytes) -> bool:
        """True when the signature over the RFC 9052 Sig_structure is good; never raises."""
        return verify_signature(public, sig_structure(self.protected, self.payload), self.signature)


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """RFC 9052 §4.4 ``["Signature1", protected, external_aad = h'', payload]``."""
    return cbor_strict.dumps(["Signature1", protected, b"", payload])


def sign1(payload: bytes, key: SigningKey, kid: str, typ: str | None = None) -> Sign1:
    """Make a COSE_Sign1 over ``payload`` with ``kid`` (and ``typ``) protected."""
    header: dict[int, Any] = {HDR_ALG: ALG_EDDSA, HDR_KID: kid.encode()}
    if typ is not None:
        header[HDR_TYP] = typ
    protected = cbor_strict.dumps(header)
    signature = sign(key, sig_structure(protected, payload))
    return Sign1(protected, kid, typ, payload, signature)


def encode(message: Sign1) -> bytes:
    return cbor_strict.dumps(message.to_list())


def from_decoded(obj: Any) -> Sign1:
    """Check the shape of a decoded COSE_Sign1 array and its protected header."""
    if not isinstance(obj, list) or len(obj) != 4:
        raise ProtocolError(Reason.MALFORMED, "not a COSE_Sign1 array of 4 items")
    protected, unprotected, payload, signature = obj
    if not isinstance(protected, bytes) or not isinstance(payload, bytes):
        raise ProtocolError(Reason.MALFORMED, "COSE_Sign1 header or payload is not a byte string")
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise ProtocolError(Reason.MALFORMED, "COSE_Sign1 signature is not 64 bytes")
    if unprotected != {}:
        raise ProtocolError(Reason.MALFORMED, "COSE_Sign1 unprotected header must be empty")
    header = cbor_strict.loads_strict(protected, max_bytes=MAX_PROTECTED_BYTES, max_depth=2)
    if not isinstance(header, dict):
        raise ProtocolError(Reason.MALFORMED, "COSE protected header is not a map")
    if HDR_CRIT in header:
        raise ProtocolError(Reason.UNSUPPORTED_VERSION, "COSE crit header: no extension is known")
    unknown = set(header) - _KNOWN_HEADERS
    if unknown:
        raise ProtocolError(
            Reason.UNSUPPORTED_VERSION, f"COSE header labels {sorted(map(str, unknown))} unknown"
        )
    if header.get(HDR_ALG) != ALG_EDDSA:
        raise ProtocolError(
            Reason.UNSUPPORTED_VERSION, f"COSE alg {header.get(HDR_ALG)!r} is not EdDSA (-8)"
        )
    kid = header.get(HDR_KID)
    if not isinstance(kid, bytes) or not kid:
        raise ProtocolError(Reason.MALFORMED, "COSE protected header has no kid")
    typ = header.get(HDR_TYP)
    if typ is not None and not isinstance(typ, str):
        raise ProtocolError(Reason.MALFORMED, "COSE typ header is not text")
    try:
        kid_text = kid.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(Reason.MALFORMED, "COSE kid is not UTF-8") from None
    return Sign1(protected, kid_text, typ, payload, signature)
