"""Signature checks reject what libsodium rejects, proven with forgeries that work.

The Wycheproof subset in ``data/ed25519_vectors.json`` gets the same answers from
OpenSSL and libsodium, so on its own it cannot show why the gate verifies with
libsodium. Here each small-order or non-canonical public key gets a signature that
satisfies the plain RFC 8032 equation ``[S]B == R + [k]A`` (checked by the small,
permissive reference below, which is itself checked on Wycheproof's valid vectors):
a verifier that only checks the equation accepts it, for a message of the forger's
choosing. ``verify_signature`` must refuse every one, and must agree with libsodium's
own ``crypto_sign_open`` on every vector and on mutated signatures.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import nacl.signing
import pytest

from agent.core.errors import ProtocolError
from agent.core.reasons import Reason
from agent.gate.policy import decide
from agent.protocol import cbor_strict, cose, qrtext
from agent.protocol.keys import IN_PLACE_BYTES, KeyRing, TrustedKey, verify_signature
from agent.protocol.signed_doc import _signed_bytes, authenticate, sign_document
from tests.credkit import GATE, NOW, SITE, Kit

VECTORS = json.loads((Path(__file__).parent / "data" / "ed25519_vectors.json").read_text())
IDENTITY = bytes.fromhex("01" + "00" * 31)

# ---- a permissive RFC 8032 reference: the plain equation, nothing else ----------------
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
Point = tuple[int, int]


def _decode_point(data: bytes) -> Point | None:
    """Decode like a lax verifier: y reduced mod p, no small-order or subgroup check."""
    value = int.from_bytes(data, "little")
    y, sign = (value & ((1 << 255) - 1)) % P, value >> 255
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = (P - x) % P
    return x, y


def _add(a: Point, b: Point) -> Point:
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + y1 * x2) * pow(1 + t, P - 2, P) % P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P
    return x3, y3


def _mul(scalar: int, point: Point) -> Point:
    result: Point = (0, 1)
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


BASE = _decode_point((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))


def plain_equation_holds(public: bytes, message: bytes, signature: bytes) -> bool:
    """What a verifier that checks only ``[S]B == R + [k]A`` (and S < L) accepts."""
    a, r = _decode_point(public), _decode_point(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= L or BASE is None:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % L
    return _mul(s, BASE) == _add(r, _mul(k, a))


def libsodium_accepts(public: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.bindings.crypto_sign_open(signature + message, public)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


def forge(public: bytes) -> tuple[bytes, bytes]:
    """(message, signature) with R = identity and S = 0 that satisfies the plain equation
    for a small-order key: any message whose k is a multiple of the key's order."""
    for counter in range(256):
        message = b"open the north gate #%d" % counter
        if plain_equation_holds(public, message, IDENTITY + bytes(32)):
            return message, IDENTITY + bytes(32)
    raise AssertionError(f"no forgery found for {public.hex()}")


def _vector(case: dict[str, str]) -> tuple[bytes, bytes, bytes]:
    return bytes.fromhex(case["pk"]), bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"])


# ---- the tests ------------------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["wycheproof"], ids=lambda c: f"tc{c['tcId']}")
def test_reference_equation_agrees_with_wycheproof_valid_vectors(case: dict[str, str]) -> None:
    # The reference is only trusted to expose forgeries if it accepts real signatures.
    if case["result"] == "valid":
        assert plain_equation_holds(*_vector(case))


@pytest.mark.parametrize("case", VECTORS["constructed"], ids=lambda c: c["name"])
def test_forgeries_on_small_order_keys_are_refused_like_libsodium(case: dict[str, str]) -> None:
    public = bytes.fromhex(case["pk"])
    message, signature = forge(public)
    assert plain_equation_holds(public, message, signature)  # a lax verifier opens the door
    assert not libsodium_accepts(public, message, signature)
    assert not verify_signature(public, message, signature)


def test_verify_signature_agrees_with_libsodium_on_vectors_and_mutations() -> None:
    cases = [_vector(c) for c in VECTORS["wycheproof"]]
    key = nacl.signing.SigningKey.generate()
    cases.append((bytes(key.verify_key), b"m", bytes(key.sign(b"m").signature)))
    mutated = []
    for public, message, signature in cases:
        for bit in range(0, 512, 7):
            flipped = bytearray(signature)
            flipped[bit // 8] ^= 1 << (bit % 8)
            mutated.append((public, message, bytes(flipped)))
    disagreements = [
        (p.hex()[:16], s.hex()[:16])
        for p, m, s in cases + mutated
        if verify_signature(p, m, s) != libsodium_accepts(p, m, s)
    ]
    assert disagreements == []
    assert sum(verify_signature(*c) for c in cases) == 6  # five valid vectors and our own


def test_a_forged_credential_from_a_small_order_issuer_key_is_bad_signature() -> None:
    # Even a keyring that somehow trusts the identity point (load_keyring refuses it)
    # cannot be made to grant: the scan path refuses the forgery.
    kit = Kit()
    claims = {1: "iss1", 2: "courier-7", 4: int(NOW) + 3600, 5: int(NOW) - 60,
              6: int(NOW) - 60, 7: bytes(8), 9: [SITE]}
    payload = cbor_strict.dumps(claims)
    protected = cbor_strict.dumps({cose.HDR_ALG: cose.ALG_EDDSA, cose.HDR_KID: b"weak"})
    message = cose.sig_structure(protected, payload)
    assert plain_equation_holds(IDENTITY, message, IDENTITY + bytes(32))
    envelope = cose.Sign1(protected, "weak", None, payload, IDENTITY + bytes(32))
    text = qrtext.encode(qrtext.PREFIX_CREDENTIAL, cose.encode(envelope))
    ring = KeyRing.of(TrustedKey("weak", IDENTITY, "issuer"))
    ctx = type(kit.ctx)(SITE, GATE, accept_static=True)
    decision = decide(text, ctx, ring, kit.revocations, kit.replays, NOW)
    assert not decision.granted
    assert decision.reason is Reason.BAD_SIGNATURE


def test_big_messages_checked_in_place_get_libsodiums_answers() -> None:
    # Over IN_PLACE_BYTES (big revocation lists) OpenSSL checks the signature without
    # copying the message; behind the explicit key and S checks it must answer as
    # libsodium does, forgeries on small-order keys included.
    big = bytes(range(256)) * (IN_PLACE_BYTES // 256 + 1)
    assert len(big) > IN_PLACE_BYTES
    key = nacl.signing.SigningKey.generate()
    public, signature = bytes(key.verify_key), bytes(key.sign(big).signature)
    cases = [(public, big, signature), (public, big + b"x", signature)]
    for bit in range(0, 512, 5):
        flipped = bytearray(signature)
        flipped[bit // 8] ^= 1 << (bit % 8)
        cases.append((public, big, bytes(flipped)))
    non_canonical_s = signature[:32] + (int.from_bytes(signature[32:], "little") + L).to_bytes(
        32, "little")
    cases.append((public, big, non_canonical_s))
    answers = [verify_signature(p, m, s) for p, m, s in cases]
    assert answers == [libsodium_accepts(p, m, s) for p, m, s in cases]
    assert answers.count(True) == 1
    for case in VECTORS["constructed"]:
        weak = bytes.fromhex(case["pk"])
        message = next(big + b"%d" % n for n in range(256)
                       if plain_equation_holds(weak, big + b"%d" % n, IDENTITY + bytes(32)))
        assert not verify_signature(weak, message, IDENTITY + bytes(32))


@pytest.mark.parametrize("size", [0, 23, 24, 255, 256, 65_535, 65_536, 300_000])
def test_the_sig_structure_built_in_place_is_rfc_9052s(size: int) -> None:
    key = nacl.signing.SigningKey.generate()
    payload = bytes(size)
    data = sign_document("gate.revocations.v1", {"a": payload}, key, "ops1")
    envelope = cose.from_decoded(cbor_strict.loads_strict(data, max_bytes=len(data)))
    signed, signature = _signed_bytes(data)
    assert signed == cose.sig_structure(envelope.protected, envelope.payload)
    assert signature == envelope.signature
    assert authenticate(data, {"ops1": bytes(key.verify_key)}, "gate.revocations.v1",
                        len(data)) == "ops1"
    with pytest.raises(ProtocolError) as refused:
        authenticate(data[:-1] + bytes([data[-1] ^ 1]), {"ops1": bytes(key.verify_key)},
                     "gate.revocations.v1", len(data))
    assert refused.value.reason == "bad_signature"
