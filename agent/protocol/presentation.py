"""Dynamic presentation: the phone proves, live, that it holds the credential's cnf key.

Shape (``QP1:`` + base45 of CBOR), kept as small as possible because every byte makes
the QR denser: ``[credential, time, nonce, signature]`` where ``credential`` is the
credential's COSE_Sign1 array embedded as is, ``time`` integer Unix seconds on the
phone, ``nonce`` 8 random bytes and ``signature`` the holder key's Ed25519 signature
over the CBOR array ``["QP1", protected, payload, issuer_signature, time, nonce]``
(the credential's byte strings verbatim, so nothing is re-encoded before checking).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from agent.core.bounds import MAX_TIME
from agent.core.errors import ProtocolError, UsageError
from agent.core.reasons import Reason
from agent.protocol import cbor_strict, cose, qrtext
from agent.protocol.credential import (
    MAX_CREDENTIAL_BYTES,
    Credential,
    credential_from_cose,
    read_credential,
)
from agent.protocol.keys import SigningKey, public_of, sign, verify_signature

CONTEXT = "QP1"
NONCE_BYTES = 8
MAX_PRESENTATION_BYTES = MAX_CREDENTIAL_BYTES + 100


@dataclass(frozen=True)
class HolderProof:
    time: int
    nonce: bytes
    signature: bytes

    def verify(self, credential: Credential) -> bool:
        """True when the credential's cnf key signed this proof; never raises."""
        if credential.holder is None:
            return False
        message = signed_bytes(credential.envelope, self.time, self.nonce)
        return verify_signature(credential.holder, message, self.signature)

    def replay_key(self, holder: bytes) -> str:
        """(holder key, nonce) hashed: what the replay cache remembers."""
        return hashlib.sha256(b"gate-agent replay\x00" + holder + self.nonce).hexdigest()[:32]


@dataclass(frozen=True)
class Scanned:
    """What a scanned code holds: a credential and, for a presentation, the proof."""

    credential: Credential
    proof: HolderProof | None


def signed_bytes(envelope: cose.Sign1, time: int, nonce: bytes) -> bytes:
    return cbor_strict.dumps(
        [CONTEXT, envelope.protected, envelope.payload, envelope.signature, time, nonce]
    )


def present(credential_text: str, holder_key: SigningKey, *, at: float) -> str:
    """The QR text a courier's phone shows at time ``at`` (``QP1:...``)."""
    try:
        credential = read_credential(credential_text)
    except ProtocolError as exc:
        raise UsageError(f"--credential is not a credential this tool can read: {exc}") from None
    if credential.holder is None:
        raise UsageError(
            "this credential has no holder key (issued without --holder-pub): "
            "it can only be shown as is"
        )
    if credential.holder != public_of(holder_key):
        raise UsageError("--holder-key does not match the key the credential was issued to")
    time, nonce = int(at), os.urandom(NONCE_BYTES)
    signature = sign(holder_key, signed_bytes(credential.envelope, time, nonce))
    body = cbor_strict.dumps([credential.envelope.to_list(), time, nonce, signature])
    return qrtext.encode(qrtext.PREFIX_PRESENTATION, body)


def read_scanned(text: str) -> Scanned:
    """Parse scanned text (credential or presentation); ProtocolError on any flaw."""
    prefix, data = qrtext.decode(text)
    if prefix == qrtext.PREFIX_CREDENTIAL:
        obj = cbor_strict.loads_strict(data, max_bytes=MAX_CREDENTIAL_BYTES, max_depth=1)
        return Scanned(credential_from_cose(obj), None)
    obj = cbor_strict.loads_strict(data, max_bytes=MAX_PRESENTATION_BYTES, max_depth=2)
    if not isinstance(obj, list) or len(obj) != 4:
        raise ProtocolError(Reason.MALFORMED, "presentation is not an array of 4 items")
    envelope, time, nonce, signature = obj
    if type(time) is not int or not 0 <= time < MAX_TIME:  # agent.core.bounds: 2100
        raise ProtocolError(Reason.MALFORMED, "presentation time is not a Unix time")
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise ProtocolError(Reason.MALFORMED, f"presentation nonce is not {NONCE_BYTES} bytes")
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise ProtocolError(Reason.MALFORMED, "presentation signature is not 64 bytes")
    credential = credential_from_cose(envelope)
    if credential.holder is None:
        raise ProtocolError(Reason.MALFORMED, "presentation of a credential without a holder key")
    return Scanned(credential, HolderProof(time, nonce, signature))
