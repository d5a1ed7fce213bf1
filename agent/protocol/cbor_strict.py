"""Strict CBOR: a well-formedness walker over the raw bytes, run before cbor2 sees them.

cbor2 on its own keeps the last of duplicate map keys, ignores trailing bytes and
accepts indefinite lengths and any nesting depth; each of those lets two parties read
the same signed bytes differently. The walker rejects them, plus non-minimal
(non-canonical) integer and length encodings, tags outside an allow-list, floats and
simple values other than false/true/null, map keys other than integers and text, and
input over a size cap. Because encodings must be minimal, two equal keys always have
equal bytes, so duplicate detection compares raw key bytes.

Byte strings are leaves: the walker jumps over their content, so checking the outer
envelope of a multi-megabyte signed document costs only a few steps.
"""

from __future__ import annotations

from typing import Any

import cbor2

from agent.core.errors import ProtocolError
from agent.core.reasons import Reason

DEFAULT_MAX_DEPTH = 8

_MAJOR_UINT, _MAJOR_NINT, _MAJOR_BSTR, _MAJOR_TSTR = 0, 1, 2, 3
_MAJOR_ARRAY, _MAJOR_MAP, _MAJOR_TAG, _MAJOR_SIMPLE = 4, 5, 6, 7
_SIMPLE_FALSE, _SIMPLE_TRUE, _SIMPLE_NULL = 20, 21, 22
_MIN_FOR_WIDTH = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}


def _bad(detail: str) -> ProtocolError:
    return ProtocolError(Reason.MALFORMED, detail)


class _Walker:
    """Walks one data item at a time; ``pos`` advances past what was checked."""

    def __init__(self, data: bytes, max_depth: int, allowed_tags: frozenset[int]) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth
        self.allowed_tags = allowed_tags

    def item(self, depth: int) -> None:
        # One function with the head parsing inlined: this runs on every scan.
        if depth > self.max_depth:
            raise _bad(f"CBOR nesting deeper than {self.max_depth}")
        data = self.data
        start = pos = self.pos
        if pos >= len(data):
            raise _bad(f"CBOR ends early at byte {pos}")
        initial = data[pos]
        major, value = initial >> 5, initial & 0x1F
        pos += 1
        if value >= 24:
            info = value
            if info == 31:
                raise _bad(f"CBOR indefinite length at byte {start} is not allowed")
            if info > 27:
                raise _bad(f"CBOR reserved additional information {info} at byte {start}")
            if major == _MAJOR_SIMPLE:
                raise _bad(f"CBOR float or simple value at byte {start} is not allowed")
            width = 1 << (info - 24)
            if pos + width > len(data):
                raise _bad(f"CBOR ends early inside a header at byte {start}")
            value = int.from_bytes(data[pos : pos + width], "big")
            if value < _MIN_FOR_WIDTH[info]:
                raise _bad(f"CBOR non-minimal encoding at byte {start}")
            pos += width
        self.pos = pos
        if major <= _MAJOR_NINT:
            return
        if major <= _MAJOR_TSTR:
            if pos + value > len(data):
                raise _bad(f"CBOR string at byte {start} runs past the end")
            self.pos = pos + value
            return
        if major == _MAJOR_ARRAY:
            self._need(value, start)
            for _ in range(value):
                self.item(depth + 1)
            return
        if major == _MAJOR_MAP:
            self._map(value, start, depth)
            return
        if major == _MAJOR_TAG:
            if value not in self.allowed_tags:
                raise _bad(f"CBOR tag {value} at byte {start} is not allowed here")
            self.item(depth + 1)
            return
        if value not in (_SIMPLE_FALSE, _SIMPLE_TRUE, _SIMPLE_NULL):
            raise _bad(f"CBOR float or simple value at byte {start} is not allowed")

    def _map(self, count: int, start: int, depth: int) -> None:
        self._need(2 * count, start)
        data = self.data
        seen: set[bytes] = set()
        for _ in range(count):
            key_start = self.pos
            if key_start >= len(data):
                raise _bad(f"CBOR ends early at byte {key_start}")
            if data[key_start] >> 5 not in (_MAJOR_UINT, _MAJOR_NINT, _MAJOR_TSTR):
                raise _bad(f"CBOR map key at byte {key_start} is not an integer or text")
            self.item(depth + 1)
            key = data[key_start : self.pos]
            if key in seen:
                raise _bad(f"CBOR duplicate map key at byte {key_start}")
            seen.add(key)
            self.item(depth + 1)

    def _need(self, count: int, start: int) -> None:
        # Every item takes at least one byte: refuse impossible counts before looping.
        if count > len(self.data) - self.pos:
            raise _bad(f"CBOR container at byte {start} claims more items than bytes left")


def check_well_formed(
    data: bytes,
    *,
    max_bytes: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
    allowed_tags: frozenset[int] = frozenset(),
) -> None:
    """Raise ProtocolError(malformed) unless ``data`` is exactly one strict CBOR item."""
    if len(data) > max_bytes:
        raise _bad(f"CBOR of {len(data)} bytes is over the {max_bytes}-byte limit")
    walker = _Walker(data, max_depth, allowed_tags)
    walker.item(0)
    if walker.pos != len(data):
        raise _bad(f"{len(data) - walker.pos} trailing bytes after the CBOR item")


def loads_strict(
    data: bytes,
    *,
    max_bytes: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
    allowed_tags: frozenset[int] = frozenset(),
) -> Any:
    """Check ``data`` with :func:`check_well_formed`, then decode it with cbor2."""
    check_well_formed(data, max_bytes=max_bytes, max_depth=max_depth, allowed_tags=allowed_tags)
    try:
        return cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise _bad(f"CBOR does not decode: {exc}") from None


def dumps(obj: Any) -> bytes:
    """Encode with cbor2; its integers and lengths are minimal, so the walker accepts it."""
    return bytes(cbor2.dumps(obj))
