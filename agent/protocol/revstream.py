"""Signed revocation lists read straight into compact buffers: the gate's install path.

``parse_revocation_list`` (agent.protocol.revocation) makes one Python object per entry,
about 300 bytes each: 1.7 GB for five million. The gate does not need them. This reader
checks the same envelope, signature, bounds and entry rules, then walks the CBOR body
itself and copies each credential id into one ``bytearray`` per id width (runs of
same-width ids are copied and unframed at C speed with extended slices), so a million
ids cost 16 MB. Courier (``sub``) entries, one per courier and few, go to a dict.

Only the gate's store reads a ``CompactList``; the centre and gatectl keep using
``RevocationList``. ``compact_from_list`` turns one into the other (tests, bundles).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from agent.core.bounds import (
    MAX_DELTA_ENTRIES,
    MAX_FILE_LIST_BYTES,
    MAX_FILE_LIST_ENTRIES,
    MAX_LIST_ENTRIES,
    MAX_TIME,
)
from agent.core.errors import ProtocolError, RevocationListError
from agent.core.ids import id_problem
from agent.core.reasons import Reason
from agent.protocol import cbor_strict, cose
from agent.protocol.keys import KeyRing, verify_signature_parts
from agent.protocol.revocation import (
    DOC_TYPE,
    MAX_LIST_BYTES,
    RevocationList,
    check_header,
    refuse_if,
)

_ABSENT = object()
# ``gate-agent revocations apply FILE`` only: the signed bytes (17 bytes an id), one
# copy for the signature check and the ids (16 bytes an id) peak near 3x the file.
FILE_MAX_BYTES = MAX_FILE_LIST_BYTES
FILE_MAX_ENTRIES = MAX_FILE_LIST_ENTRIES
_RUN_MAX = 1 << 16  # ids unframed per extended-slice step


@dataclass
class CompactEntries:
    """One side (additions or removals) of a list: ids by width, couriers by id."""

    ctis: dict[int, bytearray] = field(default_factory=dict)  # width -> ids, wire order
    subs: dict[str, int | None] = field(default_factory=dict)  # the stricter of repeats
    texts: set[str] = field(default_factory=set)  # non-hex ids (only from RevocationList)
    count: int = 0  # entries as sent, repeats included

    def __len__(self) -> int:
        return self.count

    def cti_keys(self) -> Iterator[bytes]:
        """Every id as bytes (one object each: for deltas, which are small)."""
        for width, buf in self.ctis.items():
            for i in range(0, len(buf), width):
                yield bytes(buf[i : i + width])

    def add_sub(self, sub: str, before: int | None) -> None:
        self.subs[sub] = stricter(self.subs.get(sub, _ABSENT), before)


@dataclass
class CompactList:
    """A verified list, its entries in compact buffers (see the module docstring)."""

    kind: Literal["full", "delta"]
    version: int
    base: int | None
    issued_at: int
    add: CompactEntries
    remove: CompactEntries


def stricter(current: object, new: int | None) -> int | None:
    """Two entries for one courier: keep the one that revokes more (a removal earlier in
    the same delta counts as absent)."""
    if current is _ABSENT:
        return new
    if current is None or new is None:
        return None
    assert isinstance(current, int)
    return max(current, new)


def compact_from_list(lst: RevocationList) -> CompactList:
    """The same list in compact form (already verified or made in-process)."""
    sides = []
    for entries in (lst.add, lst.remove):
        side = CompactEntries(count=len(entries))
        for entry in entries:
            if entry.kind == "sub":
                side.add_sub(entry.value, entry.before)
                continue
            try:
                raw = bytes.fromhex(entry.value) if entry.value else None
            except ValueError:
                raw = None
            if raw is None:
                side.texts.add(entry.value)
            else:
                side.ctis.setdefault(len(raw), bytearray()).extend(raw)
        sides.append(side)
    return CompactList(lst.kind, lst.version, lst.base, lst.issued_at, sides[0], sides[1])


def parse_compact_list(
    data: bytes, keyring: KeyRing, now: float, max_bytes: int = MAX_LIST_BYTES,
    max_entries: int = MAX_LIST_ENTRIES,
) -> CompactList:
    """Check and decode a signed list like ``parse_revocation_list``; RevocationListError
    saying what is wrong. ``max_bytes``/``max_entries``: raised only for a list read from
    a file (memory here is ~16 bytes an id, not ~300)."""
    try:
        payload = _open_envelope(data, keyring, now, max_bytes)
    except ProtocolError as exc:
        raise RevocationListError(f"revocation list refused ({exc.reason}): {exc.detail}") from None
    try:
        lst = _Body(data, payload, max_entries).parse()
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise RevocationListError(f"revocation list refused: {exc}") from None
    problem = None
    if lst.kind == "delta" and len(lst.add) + len(lst.remove) > MAX_DELTA_ENTRIES:
        problem = (f"a delta holds at most {MAX_DELTA_ENTRIES} entries, got "
                   f"{len(lst.add) + len(lst.remove)}: publish a full list instead")
    refuse_if(problem, lst.issued_at, now)
    return lst


def _open_envelope(data: bytes, keyring: KeyRing, now: float, max_bytes: int) -> slice:
    """The payload's place in ``data`` once type, ops key and signature checked out (the
    payload is never copied but once, for the signature check)."""
    cbor_strict.check_well_formed(data, max_bytes=max_bytes, max_depth=1)
    if not data or data[0] != 0x84:
        raise ProtocolError(Reason.MALFORMED, "not a COSE_Sign1 array of 4 items")
    items: list[slice] = []
    pos = 1
    for _ in range(3):  # protected, (unprotected), payload, signature
        if len(items) == 1:
            if data[pos] != 0xA0:
                raise ProtocolError(Reason.MALFORMED, "COSE_Sign1 unprotected header must be empty")
            pos += 1
        if data[pos] >> 5 != 2:
            raise ProtocolError(Reason.MALFORMED,
                                "COSE_Sign1 header or payload is not a byte string")
        _, length, start = _head(data, pos)
        items.append(slice(start, start + length))
        pos = start + length
    protected, payload, signature = (data[items[0]], items[1], data[items[2]])
    envelope = cose.from_decoded([protected, {}, b"", signature])
    if envelope.typ != DOC_TYPE:
        raise ProtocolError(
            Reason.MALFORMED, f"document type is {envelope.typ!r}, expected {DOC_TYPE!r}"
        )
    key = keyring.get(envelope.kid, "ops", now)
    size = payload.stop - payload.start
    prefix = cbor_strict.dumps(["Signature1", protected, b""]) + _bstr_head(size)
    prefix = bytes([0x84]) + prefix[1:]  # the 4-array of RFC 9052 Sig_structure
    view = memoryview(data)[payload]
    if not verify_signature_parts(key.public, (prefix, view), signature):
        raise ProtocolError(
            Reason.BAD_SIGNATURE, f"signature does not match ops key {envelope.kid!r}"
        )
    return payload


def _bstr_head(length: int) -> bytes:
    if length < 24:
        return bytes([0x40 | length])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if length < 1 << (8 * width):
            return bytes([0x40 | info]) + length.to_bytes(width, "big")
    raise ValueError("byte string too long")


def _head(data: bytes, pos: int) -> tuple[int, int, int]:
    """(major type, argument, position after the head), minimal encodings only."""
    initial = data[pos]
    major, info = initial >> 5, initial & 0x1F
    if info < 24:
        return major, info, pos + 1
    if info > 27:
        raise ValueError(f"indefinite or reserved CBOR length at byte {pos}")
    width = 1 << (info - 24)
    value = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
    if value < (24 if width == 1 else 1 << (4 * width)):
        raise ValueError(f"non-minimal CBOR length at byte {pos}")
    return major, value, pos + 1 + width


class _Body:
    """The body map ``{"k","v","b","t","a","r"}`` walked once, in any key order."""

    def __init__(self, data: bytes, payload: slice, max_entries: int) -> None:
        self.data = data
        self.view = memoryview(data)
        self.pos, self.end = payload.start, payload.stop
        self.max_entries = max_entries

    def parse(self) -> CompactList:
        major, count, self.pos = _head(self.data, self.pos)
        if major != 5:
            raise ValueError("the body is not a map")
        values: dict[str, object] = {}
        sides = {"a": CompactEntries(), "r": CompactEntries()}
        for _ in range(count):
            key = self._text()
            if key in values:
                raise ValueError(f"body key {key!r} appears twice")
            if key in sides:
                self._entries(sides[key])
                values[key] = sides[key]
            else:
                values[key] = self._scalar()
        if self.pos != self.end:
            raise ValueError("trailing bytes after the body")
        if set(values) != {"k", "v", "b", "t", "a", "r"}:
            raise ValueError(f"body keys are {sorted(values)}, expected a b k r t v")
        kind, version, base, issued_at = check_header(
            values["k"], values["v"], values["b"], values["t"], removals=bool(sides["r"].count))
        if kind == "full" and sides["a"].count > self.max_entries:
            raise ValueError(f"a full list holds at most {self.max_entries} entries, got "
                             f"{sides['a'].count}")
        return CompactList(kind, version, base, issued_at, sides["a"], sides["r"])

    def _text(self) -> str:
        major, length, start = _head(self.data, self.pos)
        if major != 3:
            raise ValueError(f"expected a text string at byte {self.pos}")
        self.pos = start + length
        if self.pos > self.end:
            raise ValueError("a text string runs past the end of the body")
        return str(self.view[start : self.pos], "utf-8")

    def _scalar(self) -> object:
        initial = self.data[self.pos]
        if initial == 0xF6:
            self.pos += 1
            return None
        major = initial >> 5
        if major == 3:
            return self._text()
        if major == 0:
            _, value, self.pos = _head(self.data, self.pos)
            return value
        if major == 4:
            raise ValueError("entries are not lists")
        raise ValueError(f"unexpected CBOR item (0x{initial:02x}) in the body")

    def _entries(self, side: CompactEntries) -> None:
        data, end = self.data, self.end
        major, count, pos = _head(data, self.pos)
        if major != 4:
            raise ValueError("entries are not lists")
        if count > max(self.max_entries, MAX_DELTA_ENTRIES):
            raise ValueError(f"a list holds at most {self.max_entries} entries, got {count}")
        side.count = count
        done, run = 0, 64
        while done < count:
            if pos >= end:
                raise ValueError("the entries run past the end of the body")
            initial = data[pos]
            if 0x41 <= initial <= 0x58:  # a byte string of 1-32 bytes: a credential id
                if initial == 0x58:
                    width, framing = data[pos + 1], 2
                    if not 24 <= width <= 32:
                        raise ValueError(f"entry at byte {pos} is neither a cti nor [sub, before]")
                else:
                    width, framing = initial - 0x40, 1
                step = width + framing
                k = min(run, count - done, (end - pos) // step)
                if k < 1:
                    raise ValueError("an entry runs past the end of the body")
                stop = pos + k * step
                if data[pos:stop:step] != bytes([initial]) * k or (
                        framing == 2 and data[pos + 1 : stop : step] != bytes([width]) * k):
                    run = max(1, k // 4)  # a mixed stretch: take fewer at a time
                    continue
                buf = side.ctis.setdefault(width, bytearray())
                first = len(buf)
                buf += self.view[pos:stop]
                del buf[first::step]  # drop each head byte, then the length byte
                if framing == 2:
                    del buf[first :: step - 1]
                pos, done, run = stop, done + k, min(run * 2, _RUN_MAX)
                continue
            if initial != 0x82:
                raise ValueError(f"entry at byte {pos} is neither a cti nor [sub, before]")
            self.pos = pos + 1
            sub = self._text()
            problem = id_problem(sub, "entry subject")
            if problem:
                raise ValueError(problem[:200])
            before = self._scalar()
            if before is not None and (type(before) is not int or not 0 <= before < MAX_TIME):
                raise ValueError(
                    f"entry {sub!r} has a 'before' that is not a Unix time before 2100")
            assert before is None or isinstance(before, int)
            side.add_sub(sub, before)
            pos, done = self.pos, done + 1
        if pos > end:
            raise ValueError("the entries run past the end of the body")
        self.pos = pos
