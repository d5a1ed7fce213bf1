"""Signed revocation lists and signed documents: round trip, and every kind of bad input
refused with a clear RevocationListError."""

from __future__ import annotations

from pathlib import Path

import nacl.signing
import pytest

from agent.core.errors import ProtocolError, RevocationListError
from agent.protocol.revocation import (
    RevocationEntry,
    RevocationList,
    parse_revocation_list,
    sign_revocation_list,
)
from agent.protocol.signed_doc import open_document, sign_document
from tests.credkit import NOW, Kit

ENTRIES = (
    RevocationEntry("cti", "0102030405060708"),
    RevocationEntry("sub", "C1"),
    RevocationEntry("sub", "C2", int(NOW) - 10),
)


@pytest.fixture
def kit() -> Kit:
    return Kit()


def _full(kit: Kit, version: int = 3, add: tuple[RevocationEntry, ...] = ENTRIES) -> bytes:
    lst = RevocationList("full", version, None, int(NOW), add)
    return sign_revocation_list(lst, kit.ops, kit.ops_kid)


def test_full_and_delta_round_trip(kit: Kit) -> None:
    parsed = parse_revocation_list(_full(kit), kit.keyring, NOW)
    assert parsed == RevocationList("full", 3, None, int(NOW), ENTRIES)
    delta = RevocationList("delta", 4, 3, int(NOW), ENTRIES[:1], ENTRIES[1:2])
    data = sign_revocation_list(delta, kit.ops, kit.ops_kid)
    assert parse_revocation_list(data, kit.keyring, NOW) == delta


def _refused(kit: Kit, data: bytes) -> str:
    with pytest.raises(RevocationListError) as info:
        parse_revocation_list(data, kit.keyring, NOW)
    assert not info.value.gap
    return str(info.value)


def test_tampered_list_is_refused(kit: Kit) -> None:
    data = bytearray(_full(kit))
    data[data.index(bytes.fromhex("0102030405060708"))] ^= 0xFF
    assert "bad_signature" in _refused(kit, bytes(data))


def test_list_signed_by_a_foreign_or_issuer_key_is_refused(kit: Kit) -> None:
    foreign = sign_revocation_list(
        RevocationList("full", 1, None, int(NOW), ()), nacl.signing.SigningKey.generate(), "ops1"
    )
    assert "bad_signature" in _refused(kit, foreign)
    by_issuer = sign_revocation_list(
        RevocationList("full", 1, None, int(NOW), ()), kit.issuer, kit.kid
    )
    assert "is an issuer key, not an ops key" in _refused(kit, by_issuer)


@pytest.mark.parametrize("cut", [0, 1, 10, 50, -1])
def test_truncated_list_is_refused(kit: Kit, cut: int) -> None:
    data = _full(kit)
    assert "refused" in _refused(kit, data[:cut])


@pytest.mark.parametrize("junk", [b"", b"hello", b"\xff" * 100, b"\x84" + b"\x40" * 4])
def test_garbage_is_refused(kit: Kit, junk: bytes) -> None:
    assert "malformed" in _refused(kit, junk)


def test_another_signed_document_type_is_not_a_revocation_list(kit: Kit) -> None:
    command = sign_document("gate.command.v1", {"open": "north-1"}, kit.ops, kit.ops_kid)
    assert "expected 'gate.revocations.v1'" in _refused(kit, command)


def test_semantic_checks_after_the_signature(kit: Kit) -> None:
    bad_body = sign_document(
        "gate.revocations.v1",
        {"k": "full", "v": 0, "b": None, "t": 1, "a": [], "r": []},
        kit.ops,
        kit.ops_kid,
    )
    assert "version is not a positive integer" in _refused(kit, bad_body)
    bad_entry = sign_document(
        "gate.revocations.v1",
        {"k": "full", "v": 1, "b": None, "t": 1, "a": [[1, 2, 3]], "r": []},
        kit.ops,
        kit.ops_kid,
    )
    assert "neither a cti nor [sub, before]" in _refused(kit, bad_entry)


def test_signing_refuses_inconsistent_lists(kit: Kit) -> None:
    with pytest.raises(ValueError, match="base below"):
        sign_revocation_list(RevocationList("delta", 2, 2, 0, ()), kit.ops, "ops1")
    with pytest.raises(ValueError, match="not hex"):
        sign_revocation_list(
            RevocationList("full", 2, None, 0, (RevocationEntry("cti", "zz"),)), kit.ops, "ops1"
        )


def test_open_document_returns_the_body_and_checks_size(kit: Kit) -> None:
    data = sign_document("gate.time.v1", {"t": 5}, kit.ops, kit.ops_kid)
    assert open_document(data, kit.keyring, "gate.time.v1", NOW) == {"t": 5}
    with pytest.raises(ProtocolError, match="limit"):
        open_document(data, kit.keyring, "gate.time.v1", NOW, max_bytes=20)


def test_a_large_list_round_trips_into_the_store(kit: Kit, tmp_path: Path) -> None:
    from agent.store.revocations import RevocationStore

    add = tuple(RevocationEntry("cti", f"{i:016x}") for i in range(50_000))
    data = _full(kit, 7, add + ENTRIES[1:])
    lst = parse_revocation_list(data, kit.keyring, NOW)
    store = RevocationStore(tmp_path / "state")
    try:
        store.apply(lst)
        assert store.version == 7
        assert store.is_revoked(f"{49_999:016x}", "anyone", 0)
        assert store.is_revoked("ffffffffffffffff", "C1", 0)
        assert not store.is_revoked("ffffffffffffffff", "C2", int(NOW))
    finally:
        store.close()
