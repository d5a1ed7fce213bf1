"""Strict CBOR: what cbor2 alone lets through is refused before decoding."""

from __future__ import annotations

import cbor2
import pytest

from agent.core.errors import ProtocolError
from agent.protocol.cbor_strict import check_well_formed, loads_strict


def _refused(data: bytes, **kw: object) -> str:
    with pytest.raises(ProtocolError) as info:
        loads_strict(data, max_bytes=kw.pop("max_bytes", 1000), **kw)  # type: ignore[arg-type]
    assert info.value.reason == "malformed"
    return info.value.detail


def test_cbor2_alone_keeps_last_duplicate_and_ignores_trailing_bytes() -> None:
    # Why the walker exists: both inputs decode "fine" with cbor2.
    assert cbor2.loads(bytes.fromhex("a201020103")) == {1: 3}
    assert cbor2.loads(bytes.fromhex("0102")) == 1


@pytest.mark.parametrize(
    ("hexdata", "words"),
    [
        ("a201020103", "duplicate"),  # {1: 2, 1: 3}
        ("a2616101616102", "duplicate"),  # {"a": 1, "a": 2}
        ("0102", "trailing"),
        ("9f01ff", "indefinite"),  # [_ 1]
        ("5f4101ff", "indefinite"),  # (_ h'01')
        ("bf0101ff", "indefinite"),
        ("1817", "non-minimal"),  # 23 in two bytes
        ("190017", "non-minimal"),
        ("5801aa", "non-minimal"),  # 1-byte string with a 1-byte length
        ("c11a5f5e1000", "tag"),  # epoch date tag
        ("f93c00", "float"),  # half float 1.0
        ("f7", "simple"),  # undefined
        ("a1f401", "not an integer or text"),  # {false: 1}
        ("a1410101", "not an integer or text"),  # {h'01': 1}
        ("1901", "ends early"),
        ("8301", "more items than bytes"),
        ("59010000", "runs past"),
        ("9affffffff", "more items than bytes"),
        ("1c", "reserved"),
    ],
)
def test_strict_walker_refuses(hexdata: str, words: str) -> None:
    assert words in _refused(bytes.fromhex(hexdata))


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    nested = b"\x81" * 10 + b"\x01"
    assert "nesting" in _refused(nested, max_depth=8)
    assert loads_strict(nested, max_bytes=100, max_depth=10) is not None


def test_size_cap_is_checked_before_anything_else() -> None:
    assert "limit" in _refused(b"\x01" * 2000, max_bytes=1000)


def test_allowed_tag_passes_and_well_formed_data_decodes() -> None:
    check_well_formed(bytes.fromhex("d28101"), max_bytes=10, allowed_tags=frozenset({18}))
    assert loads_strict(cbor2.dumps({1: [b"ab", "t", -5, None, True]}), max_bytes=100) == {
        1: [b"ab", "t", -5, None, True]
    }


def test_a_large_byte_string_is_one_step() -> None:
    # The envelope of a multi-megabyte signed document is checked without walking it.
    big = cbor2.dumps([b"\x00" * 5_000_000, 1])
    check_well_formed(big, max_bytes=len(big), max_depth=1)


def test_map_cut_short_after_a_long_value() -> None:
    assert "ends early" in _refused(bytes.fromhex("a201430102" + "03"))
