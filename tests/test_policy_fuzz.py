"""Random and mutated inputs never grant and never raise."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.protocol import qrtext
from tests.credkit import Kit

KIT = Kit()
PRESENTATION = KIT.presentation()
PREFIX, BODY = qrtext.decode(PRESENTATION)
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _never_grants(text: str) -> None:
    decision = KIT.decide(text)  # must not raise
    assert not decision.granted, text
    assert decision.reason != "ok"


def test_the_unmutated_code_is_granted() -> None:
    assert KIT.decide(PRESENTATION).granted


@SETTINGS
@given(st.text(max_size=600))
def test_random_text(text: str) -> None:
    _never_grants(text)


@SETTINGS
@given(st.text(alphabet=string.digits + string.ascii_uppercase + " $%*+-./:", max_size=500))
def test_random_base45_after_a_known_prefix(tail: str) -> None:
    _never_grants("QP1:" + tail)
    _never_grants("QM1:" + tail)


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes_in_a_valid_frame(data: bytes) -> None:
    _never_grants(qrtext.encode("QP1:", data))
    _never_grants(qrtext.encode("QM1:", data))


@SETTINGS
@given(st.integers(0, len(BODY) * 8 - 1))
def test_any_single_bit_flip(bit: int) -> None:
    mutated = bytearray(BODY)
    mutated[bit // 8] ^= 1 << (bit % 8)
    _never_grants(qrtext.encode(PREFIX, bytes(mutated)))


@SETTINGS
@given(st.integers(0, len(BODY) - 1))
def test_any_truncation(length: int) -> None:
    _never_grants(qrtext.encode(PREFIX, BODY[:length]))


@SETTINGS
@given(st.integers(0, len(BODY)), st.binary(min_size=1, max_size=8))
def test_any_insertion(at: int, extra: bytes) -> None:
    _never_grants(qrtext.encode(PREFIX, BODY[:at] + extra + BODY[at:]))


@SETTINGS
@given(st.integers(0, len(PRESENTATION) - 1), st.characters(codec="ascii"))
def test_any_character_replaced_in_the_text(at: int, char: str) -> None:
    text = PRESENTATION[:at] + char + PRESENTATION[at + 1 :]
    if text == PRESENTATION:
        return
    decision = KIT.decide(text)
    # A few text edits decode to the same bytes (e.g. trailing whitespace): only those
    # may still be granted.
    if decision.granted:
        assert qrtext.decode(text) == (PREFIX, BODY)
