"""Every reason code, reached by a real crafted input through ``decide``."""

from __future__ import annotations

from typing import Any

import cbor2
import nacl.signing
import pytest

from agent.core.reasons import Reason
from agent.gate.policy import GateContext
from agent.protocol import qrtext
from agent.protocol.cose import sig_structure
from tests.credkit import GATE, NOW, SITE, Kit, MemoryRevocations


@pytest.fixture
def kit() -> Kit:
    return Kit()


def _signed(kit: Kit, header: dict[int, Any], claims: dict[int, Any], **enc: Any) -> str:
    """A credential with any protected header and claims, properly signed."""
    protected = cbor2.dumps(header)
    payload = cbor2.dumps(claims)
    signature = kit.issuer.sign(sig_structure(protected, payload)).signature
    return qrtext.encode("QM1:", cbor2.dumps([protected, {}, payload, signature], **enc))


def _claims(**over: Any) -> dict[int, Any]:
    claims = {1: "iss1", 2: "C1", 4: int(NOW) + 3600, 5: int(NOW) - 60, 6: int(NOW) - 60,
              7: b"\x01" * 8, 9: [SITE]}
    claims.update({int(k[1:]): v for k, v in over.items()})
    return claims


STATIC = GateContext(SITE, GATE, accept_static=True)


def test_ok_for_a_live_presentation(kit: Kit) -> None:
    d = kit.decide(kit.presentation())
    assert (d.granted, d.reason, d.sub) == (True, Reason.OK, "C123456")
    assert d.replay_key and d.replay_until == NOW + 31
    assert d.to_json() == {"granted": True, "reason": "ok", "sub": "C123456", "cti": d.cti}
    assert d.cti is not None and len(d.cti) == 16 and d.cti == d.cti.lower()


def test_ok_for_a_static_credential_where_the_gate_allows_it(kit: Kit) -> None:
    d = kit.decide(kit.credential(bound=False), ctx=STATIC)
    assert (d.granted, d.reason, d.replay_key) == (True, Reason.OK, None)


def test_crafted_credential_with_valid_signature_is_ok(kit: Kit) -> None:
    # The crafting helper itself makes acceptable credentials: the refusals below are real.
    assert kit.decide(_signed(kit, {1: -8, 4: b"iss1"}, _claims()), ctx=STATIC).granted


@pytest.mark.parametrize(
    "text",
    ["hello", "QM1:", "QM1:!!!!", "QM1:0EC", "QP1:0EC", "x" * 5000, "QM1:" + "A" * 2000],
)
def test_malformed_text(kit: Kit, text: str) -> None:
    d = kit.decide(text)
    assert (d.granted, d.reason, d.sub, d.cti) == (False, Reason.MALFORMED, None, None)


@pytest.mark.parametrize("text", ["", "   ", "\r\n"])
def test_nothing_read_is_no_code(kit: Kit, text: str) -> None:
    d = kit.decide(text)
    assert (d.granted, d.reason, d.sub, d.cti) == (False, Reason.NO_CODE, None, None)


def test_malformed_duplicate_claim_is_refused_not_last_wins(kit: Kit) -> None:
    # cbor2 would keep the second sub; the walker refuses the whole code.
    claims = cbor2.dumps(_claims())
    dup = b"\xa8" + claims[1:] + b"\x02\x62C2"  # map of 8 with sub twice
    protected = cbor2.dumps({1: -8, 4: b"iss1"})
    sig = kit.issuer.sign(sig_structure(protected, dup)).signature
    text = qrtext.encode("QM1:", cbor2.dumps([protected, {}, dup, sig]))
    assert kit.decide(text, ctx=STATIC).reason == Reason.MALFORMED


def test_malformed_trailing_bytes_and_indefinite_lengths(kit: Kit) -> None:
    _, data = qrtext.decode(kit.credential(bound=False))
    assert kit.decide(qrtext.encode("QM1:", data + b"\x00"), ctx=STATIC).reason == "malformed"
    indefinite = b"\x9f" + data[1:] + b"\xff"
    assert kit.decide(qrtext.encode("QM1:", indefinite), ctx=STATIC).reason == "malformed"


def test_malformed_unknown_claim_and_wrong_types(kit: Kit) -> None:
    for claims in (_claims(c99=1), _claims(c4="tomorrow"), _claims(c7=b"short"),
                   _claims(c9=["bad/scope/x"]), _claims(c8={1: {1: 1, -1: 6, -2: b"x"}})):
        assert kit.decide(_signed(kit, {1: -8, 4: b"iss1"}, claims), ctx=STATIC).reason == (
            "malformed"
        )


@pytest.mark.parametrize("text", ["QM2:0EC", "QP9:0EC", "ZZ1:0EC"])
def test_unsupported_version_prefix(kit: Kit, text: str) -> None:
    assert kit.decide(text).reason == Reason.UNSUPPORTED_VERSION


@pytest.mark.parametrize(
    "header", [{1: -7, 4: b"iss1"}, {1: -8, 4: b"iss1", 2: [99]}, {1: -8, 4: b"iss1", 99: 1}]
)
def test_unsupported_alg_crit_or_unknown_header(kit: Kit, header: dict[int, Any]) -> None:
    assert kit.decide(_signed(kit, header, _claims()), ctx=STATIC).reason == (
        Reason.UNSUPPORTED_VERSION
    )


def test_unknown_key_and_roles_kept_apart(kit: Kit) -> None:
    assert kit.decide(kit.credential(kid="other")).reason == Reason.UNKNOWN_KEY
    # Signed by the ops key under its own kid: an ops key never issues credentials.
    d = kit.decide(kit.credential(key=kit.ops, kid=kit.ops_kid))
    assert (d.reason, d.sub) == (Reason.UNKNOWN_KEY, None)


def test_bad_signature(kit: Kit) -> None:
    forged = kit.credential(key=nacl.signing.SigningKey.generate())  # right kid, wrong key
    assert kit.decide(forged).reason == Reason.BAD_SIGNATURE
    _, data = qrtext.decode(kit.credential(bound=False))
    flipped = data[:-1] + bytes([data[-1] ^ 1])
    d = kit.decide(qrtext.encode("QM1:", flipped), ctx=STATIC)
    assert (d.reason, d.sub, d.cti) == (Reason.BAD_SIGNATURE, None, None)


def test_bad_holder_signature(kit: Kit) -> None:
    # A screenshot of the credential re-presented with another phone's key.
    from agent.protocol.credential import read_credential
    from agent.protocol.presentation import signed_bytes

    cred = read_credential(kit.credential())
    thief = nacl.signing.SigningKey.generate()
    nonce = b"\x07" * 8
    sig = thief.sign(signed_bytes(cred.envelope, int(NOW), nonce)).signature
    text = qrtext.encode("QP1:", cbor2.dumps([cred.envelope.to_list(), int(NOW), nonce, sig]))
    d = kit.decide(text)
    assert (d.granted, d.reason) == (False, Reason.BAD_SIGNATURE)


def test_holder_required(kit: Kit) -> None:
    bound = kit.credential(bound=True)
    assert kit.decide(bound, ctx=STATIC).reason == Reason.HOLDER_REQUIRED  # cnf, no proof
    d = kit.decide(kit.credential(bound=False))  # gate accepts live codes only
    assert (d.reason, d.sub) == (Reason.HOLDER_REQUIRED, "C123456")


def test_presentation_expired_both_ways(kit: Kit) -> None:
    assert kit.decide(kit.presentation(at=NOW - 31)).reason == Reason.PRESENTATION_EXPIRED
    assert kit.decide(kit.presentation(at=NOW - 30)).granted
    assert kit.decide(kit.presentation(at=NOW + 6)).reason == Reason.PRESENTATION_EXPIRED
    assert kit.decide(kit.presentation(at=NOW + 5)).granted


def test_replayed_after_a_grant_is_remembered(kit: Kit) -> None:
    code = kit.presentation()
    first = kit.decide(code)
    assert first.granted and first.replay_key and first.replay_until
    kit.replays.remember(first.replay_key, first.replay_until)
    assert kit.decide(code, now=NOW + 10).reason == Reason.REPLAYED
    assert kit.decide(kit.presentation(at=NOW + 10), now=NOW + 10).granted  # a fresh code


def test_expired_and_not_yet_valid(kit: Kit) -> None:
    old = kit.credential(not_before=NOW - 7200, ttl_s=3600)
    assert kit.decide(kit.presentation(old)).reason == Reason.EXPIRED
    future = kit.credential(not_before=NOW + 3600)
    assert kit.decide(kit.presentation(future)).reason == Reason.NOT_YET_VALID


def test_wrong_scope_and_gate_patterns(kit: Kit) -> None:
    assert kit.decide(kit.presentation(kit.credential(scope=["other-site"]))).reason == (
        Reason.WRONG_SCOPE
    )
    wrong_gate = kit.credential(scope=[f"{SITE}/south-2"])
    assert kit.decide(kit.presentation(wrong_gate)).reason == Reason.WRONG_SCOPE
    this_gate = kit.credential(scope=["other-site", f"{SITE}/{GATE}"])
    assert kit.decide(kit.presentation(this_gate)).granted


def test_revoked_by_cti_and_by_courier(kit: Kit) -> None:
    code = kit.presentation()
    cti = kit.decide(code).cti
    assert cti is not None
    kit.revocations = MemoryRevocations(ctis=[cti])
    assert kit.decide(code).reason == Reason.REVOKED
    kit.revocations = MemoryRevocations(subs={"C123456": None})
    assert kit.decide(kit.presentation()).reason == Reason.REVOKED
    # Revoked "before" a time: a credential issued after it is good again.
    kit.revocations = MemoryRevocations(subs={"C123456": int(NOW) - 3600})
    assert kit.decide(kit.presentation()).granted
    kit.revocations = MemoryRevocations(subs={"C123456": int(NOW)})
    assert kit.decide(kit.presentation()).reason == Reason.REVOKED


def test_clock_untrusted(kit: Kit) -> None:
    d = kit.decide(kit.presentation(), clock_trusted=False)
    assert (d.granted, d.reason) == (False, Reason.CLOCK_UNTRUSTED)


def test_a_failing_cache_is_an_internal_error_denial(kit: Kit) -> None:
    class Broken:
        def is_revoked(self, cti: str, sub: str, iat: int) -> bool:
            raise RuntimeError("disk gone")

    kit.revocations = Broken()  # type: ignore[assignment]
    d = kit.decide(kit.presentation())
    assert (d.granted, d.reason) == (False, Reason.INTERNAL_ERROR)


def test_order_signature_before_holder_and_scope(kit: Kit) -> None:
    # A forged, out-of-scope, expired static code reports the first failing check.
    forged = kit.credential(key=nacl.signing.SigningKey.generate(), scope=["x"], bound=False,
                            not_before=NOW - 7200, ttl_s=60)
    assert kit.decide(forged).reason == Reason.BAD_SIGNATURE


def test_trailing_newline_from_a_serial_scanner_is_fine(kit: Kit) -> None:
    assert kit.decide(kit.presentation() + "\r\n").granted
