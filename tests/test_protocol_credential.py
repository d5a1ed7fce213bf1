"""Credentials and presentations: what is issued reads back, stays small, and the
tools refuse what cannot work."""

from __future__ import annotations

import base45
import nacl.signing
import pytest
import segno
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.errors import UsageError
from agent.protocol import qrtext
from agent.protocol.credential import issue_credential, read_credential
from agent.protocol.presentation import present, read_scanned
from tests.credkit import NOW, SITE, Kit


def test_issued_claims_read_back() -> None:
    kit = Kit()
    cred = read_credential(kit.credential(scope=[SITE, "other/gate-2"], ttl_s=3600))
    assert (cred.kid, cred.iss, cred.sub) == ("iss1", "iss1", "C123456")
    assert (cred.nbf, cred.exp, cred.iat) == (int(NOW) - 60, int(NOW) + 3540, int(NOW) - 60)
    assert cred.scope == (SITE, "other/gate-2")
    assert cred.holder == bytes(kit.holder.verify_key)
    assert len(bytes.fromhex(cred.cti)) == 8


def test_each_credential_gets_a_fresh_cti() -> None:
    kit = Kit()
    assert read_credential(kit.credential()).cti != read_credential(kit.credential()).cti


def test_a_presentation_carries_the_credential_and_a_fresh_nonce() -> None:
    kit = Kit()
    text = kit.credential()
    one, two = read_scanned(kit.presentation(text)), read_scanned(kit.presentation(text))
    assert one.credential == two.credential == read_credential(text)
    assert one.proof and two.proof and one.proof.nonce != two.proof.nonce
    assert one.proof.time == int(NOW)


def test_qr_text_is_alphanumeric_and_small() -> None:
    kit = Kit()
    static = kit.credential(bound=False)
    live = kit.presentation()
    for text in (static, kit.credential(), live):
        assert set(text) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    # Measured sizes (docs/protocol.md): a static credential fits a version-10 QR at
    # EC level M; a live presentation (two signatures and a key) needs version 12.
    assert len(static) < 230
    assert segno.make(static, error="m", boost_error=False).version <= 10
    assert len(live) < 400
    assert segno.make(live, error="m", boost_error=False).version <= 12


def test_present_refuses_what_cannot_work() -> None:
    kit = Kit()
    with pytest.raises(UsageError, match="no holder key"):
        present(kit.credential(bound=False), kit.holder, at=NOW)
    with pytest.raises(UsageError, match="does not match"):
        present(kit.credential(), nacl.signing.SigningKey.generate(), at=NOW)
    with pytest.raises(UsageError, match="not a credential"):
        present("QM1:0EC", kit.holder, at=NOW)


@pytest.mark.parametrize("scope", ["", "a/b/c", "site/*", "*", "a b", "site+", "#"])
def test_bad_scope_patterns_are_refused_at_issue(scope: str) -> None:
    with pytest.raises(UsageError, match="SITE/GATE"):
        Kit().credential(scope=[scope])


def test_issue_refuses_a_small_order_holder_key() -> None:
    with pytest.raises(UsageError, match="small order"):
        issue_credential(
            nacl.signing.SigningKey.generate(), kid="k", sub="C1", scope=[SITE],
            not_before=NOW, ttl_s=60, now=NOW, holder_pub=bytes.fromhex("01" + "00" * 31),
        )


def test_prefixes_are_versioned() -> None:
    assert qrtext.KNOWN_PREFIXES == ("QM1:", "QP1:")


# RFC 9285 sections 4.3 and 4.4.
RFC9285 = [(b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"), (b"base-45", "UJCLQE7W581"),
           (b"ietf!", "QED8WEX0"), (b"", "")]


@pytest.mark.parametrize(("data", "text"), RFC9285)
def test_base45_matches_the_rfc_examples(data: bytes, text: str) -> None:
    assert qrtext.b45encode(data) == text
    assert qrtext.b45decode(text) == data


@pytest.mark.parametrize("text", ["GGW", "GGW000", "V5", "A", "ABCD", "ab", "0:\u00e9"])
def test_base45_refuses_what_the_rfc_forbids(text: str) -> None:
    """A group over 65535, a last pair over 255, a dangling character, a foreign one."""
    assert qrtext.b45decode(text) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_base45_round_trips_and_equals_the_reference_package(data: bytes) -> None:
    text = base45.b45encode(data).decode()
    assert qrtext.b45encode(data) == text
    assert qrtext.b45decode(text) == data


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:ab\u00e9", max_size=60))
def test_base45_refuses_what_the_reference_refuses(text: str) -> None:
    try:
        expected: bytes | None = bytes(base45.b45decode(text))
    except ValueError:
        expected = None
    assert qrtext.b45decode(text) == expected


def test_issuing_refuses_a_validity_no_gate_could_read() -> None:
    key = nacl.signing.SigningKey.generate()
    with pytest.raises(UsageError, match="shorter --ttl"):
        issue_credential(key, kid="iss1", sub="C1", scope=["s"], not_before=1_800_000_000,
                         ttl_s=2.0**41, now=1_800_000_000)
