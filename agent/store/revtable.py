"""The revocation table: sorted fixed-width columns in one file, memory-mapped.

A million revoked ids as Python bytes in a set cost ~90 MB; here they cost 16 bytes
each, in the file and (as pages the lookups touch) in memory::

    b"GAREVT1\\n" | u32 header length | header JSON, space-padded to 8 | columns | SHA-256

Columns (little-endian, each 8-aligned), for each id width ``w`` (1-32 bytes):
``hi{w}``: one u64 per id, the big-endian value of its first min(w, 8) bytes, ascending;
``lo{w}`` (9-16 bytes): a u64 of the other w - 8 bytes the same way; ``rest{w}`` (17-32):
those bytes raw. The table is in byte order of the ids, so a lookup is a C-speed
``bisect`` on a ``memoryview`` cast to u64, narrowed by a 64K-bucket index built on load,
then one compare of the ``lo`` value (a C bisect of ``lo`` too when ids share their first
8 bytes, as counters do).

Couriers (``sub``): ``sh`` the CRC-32 of the id as u64 (ascending), ``sb`` the cut-off
(``ALL``: every credential), ``so``/``st`` offsets into the ids' UTF-8 text. A hash hit
is confirmed by comparing the full id, so a collision never grants or denies wrongly.

The header holds the version, times and the few non-hex ids (old snapshots only). The
digest is checked on open by reading the file, so unverified pages are never mapped in.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from array import array
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import Any, Literal, NamedTuple

from agent.core.errors import CorruptStateError
from agent.store.revbuild import (
    ABSENT,
    ALL,
    DIGEST,
    LEN,
    LITTLE,
    MAGIC,
    IdColumns,
    id_columns,
    records_of,
    second_name,
    sub_hash,
    table_parts,
    write_table,
)

__all__ = ["ABSENT", "ALL", "MAGIC", "IdColumns", "RevTable", "id_columns", "sub_hash",
           "table_parts", "write_table"]

_INDEX_FROM = 4096  # ids of one width before the 64K-bucket index pays for itself
_pread = os.pread
_ORDER: Literal["little", "big"] = "little" if LITTLE else "big"


class _Group(NamedTuple):
    """The mapped columns of the ids of one width."""

    hi: Any  # u64 view
    second: Any  # u64 view (lo), raw view (rest) or b""
    sw: int  # bytes after the first 8 that follow the prefix (0: none)
    starts: array[int] | None  # where each 64K bucket starts
    n: int
    at: int  # file offset of the second column (pread)
    ebits: int  # bits after the prefix
    pfx: int  # the prefix as an integer
    prefix: bytes
    emask: int  # (1 << ebits) - 1
    lmask: int  # (1 << 8 * sw) - 1
    shift: int  # 8 * sw
    ishift: int  # hi >> ishift: the bucket


class RevTable:
    """One verified table; lookups read the mapped columns (no per-entry objects)."""

    def __init__(self, buf: mmap.mmap | bytes | None, path: Path | None,
                 fd: int | None = None) -> None:
        """``fd``: the mapped file, to read an id's rest with ``pread`` (unmapped: see
        ``has_id``); without one the rest is sliced from ``buf``."""
        self._buf = buf
        self._fd = fd
        self._views: list[memoryview] = []
        self._ids: dict[int, _Group] = {}
        self.header: dict[str, Any] = {}
        self.texts: frozenset[str] = frozenset()
        self.count = 0
        self._subs_n = 0
        if buf is not None:
            try:
                self._parse(buf)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                self.close()
                raise CorruptStateError(
                    f"{path} has a valid checksum but a bad layout: {exc}") from exc

    @classmethod
    def open(cls, path: Path, *, verify: bool = True) -> RevTable:
        """Verify the digest by reading (``verify=False``: a file this process just wrote
        and fsynced), then map the same file; CorruptStateError."""
        with open(path, "rb") as handle:
            if not verify:
                return cls._mapped(handle, path)
            size = os.fstat(handle.fileno()).st_size
            fixed = len(MAGIC) + LEN.size
            if size < fixed + DIGEST or handle.read(len(MAGIC)) != MAGIC:
                raise CorruptStateError(f"{path} is not a revocation table (bad header or empty)")
            handle.seek(0)
            digest, chunk, left = hashlib.sha256(), bytearray(1 << 20), size - DIGEST
            while left > 0:
                got = handle.readinto(memoryview(chunk)[: min(left, len(chunk))])
                if not got:
                    break
                digest.update(memoryview(chunk)[:got])
                left -= got
            if left or digest.digest() != handle.read(DIGEST):
                raise CorruptStateError(f"{path} fails its checksum (torn write or edited)")
            return cls._mapped(handle, path)

    @classmethod
    def _mapped(cls, handle: Any, path: Path) -> RevTable:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        if hasattr(mmap, "MADV_RANDOM"):  # lookups jump: no read-ahead, no fault-around
            mapped.madvise(mmap.MADV_RANDOM)
        return cls(mapped, path, os.dup(handle.fileno()))

    @classmethod
    def empty(cls) -> RevTable:
        return cls(None, None)

    def _parse(self, buf: mmap.mmap | bytes) -> None:
        (head_len,) = LEN.unpack_from(buf, len(MAGIC))
        start = len(MAGIC) + LEN.size
        header = json.loads(bytes(buf[start : start + head_len]).decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("the header is not an object")
        body_end = len(buf) - DIGEST
        cols: dict[str, memoryview] = {}
        starts: dict[str, int] = {}
        for name, offset, length in header["columns"]:
            if offset % 8 or offset < start + head_len or offset + length > body_end:
                raise ValueError(f"column {name} is outside the file")
            cols[str(name)] = self._view(buf, offset, length)
            starts[str(name)] = offset
        for width, count, prefix_hex in header["ids"]:
            prefix = bytes.fromhex(prefix_hex)
            e = width - len(prefix)
            if not (1 <= width <= 32 and count >= 0 and e >= 1):
                raise ValueError(f"bad id group {width}x{count}")
            hi = self._u64(cols[f"hi{width}"], count)
            name = f"{second_name(e)}{width}"
            if 8 < e <= 16:
                second = self._u64(cols[name], count)
            elif e > 16:
                second = cols[name]
                if len(second) != (e - 8) * count:
                    raise ValueError(f"column {name} has the wrong length")
            else:
                second = b""
            ishift = 8 * min(e, 8) - 16  # the top 16 bits of a hi value pick its bucket
            index = _bucket_index(hi, ishift) if ishift >= 0 and count >= _INDEX_FROM else None
            sw = max(0, e - 8)
            self._ids[width] = _Group(hi, second, sw, index, count, starts.get(name, 0),
                                      8 * e, int.from_bytes(prefix, "big"), prefix,
                                      (1 << 8 * e) - 1, (1 << 8 * sw) - 1, 8 * sw, ishift)
            self.count += count
        n = header["subs"]
        self._sh, self._sb = self._u64(cols["sh"], n), self._u64(cols["sb"], n)
        self._so, self._st = self._u64(cols["so"], n + 1), cols["st"]
        if n and self._so[n] != len(self._st):
            raise ValueError("courier id text has the wrong length")
        self._subs_n = n
        self._mask, self._seen = _sub_filter(self._sh, n)
        self.texts = frozenset(str(t) for t in header["cti_text"])
        self.count += n + len(self.texts)
        self.header = header

    def _view(self, buf: mmap.mmap | bytes, offset: int, length: int) -> memoryview:
        view = memoryview(buf)[offset : offset + length]
        self._views.append(view)
        return view

    def _u64(self, view: memoryview, count: int) -> Any:
        if len(view) != 8 * count:
            raise ValueError("a u64 column has the wrong length")
        if not LITTLE:  # a big-endian host: a swapped copy
            col = array("Q", bytes(view))
            col.byteswap()
            return col
        cast = view.cast("Q")
        self._views.append(cast)
        return cast

    # ---- lookups (the scan path) ---------------------------------------------------

    def has_id(self, key: bytes) -> bool:
        group = self._ids.get(len(key))
        if group is None:
            return False
        hi, second, sw, index, n, at, ebits, pfx, prefix, emask, lmask, shift, ishift = group
        full = int.from_bytes(key, "big")
        if prefix:
            if full >> ebits != pfx:  # not the prefix every listed id of this width has
                return False
            full &= emask
        value = full >> shift  # the first 8 bytes after the prefix (or fewer)
        if index is None:
            lo, top = 0, n
        else:
            bucket = value >> ishift
            lo, top = index[bucket], index[bucket + 1]
        i = bisect_left(hi, value, lo, top)
        if i == top or hi[i] != value:
            return False
        if not sw:
            return True
        if sw > 8:
            return self._wide_id(group, i, top, key)
        fd = self._fd
        # Read, not mapped: a mapped page (a whole folio on newer kernels) would stay
        # resident after each hit; the hi column alone is what misses touch.
        if fd is None:
            found = second[i] == full & lmask
        elif sw == 8 and LITTLE:  # the u64's bytes are the id's last 8, reversed
            found = _pread(fd, 8, at + 8 * i) == key[:-9:-1]
        else:
            found = int.from_bytes(_pread(fd, 8, at + 8 * i), _ORDER) == full & lmask
        if found:
            return True
        if i + 1 == top or hi[i + 1] != value:  # the usual case: one id with this hi
            return False
        low = full & lmask
        end = bisect_right(hi, value, i, top)
        k = bisect_left(second, low, i, end)
        return k < end and bool(second[k] == low)

    def _wide_id(self, group: _Group, i: int, top: int, key: bytes) -> bool:
        """More than 16 bytes after the prefix (rare): the rest compared as bytes."""
        hi, rest, sw, _, _, at, *_ = group
        value, tail = hi[i], key[-sw:]
        if self._rest(rest, sw, at, i) == tail:
            return True
        if i + 1 == top or hi[i + 1] != value:
            return False
        k = self._first_rest(group, i, bisect_right(hi, value, i, top), tail)
        return k < top and hi[k] == value and self._rest(rest, sw, at, k) == tail

    def _rest(self, rest: Any, rw: int, at: int, i: int) -> bytes:
        """The bytes after the first 8 of id ``i``: read, not mapped, so no page of the
        rest column (a whole folio on newer kernels) stays resident after a hit."""
        fd = self._fd
        return bytes(rest[i * rw : i * rw + rw]) if fd is None else os.pread(fd, rw, at + i * rw)

    def _first_rest(self, group: _Group, lo: int, top: int, tail: bytes) -> int:
        """In a run of long ids with the same ``hi``, the first whose rest is not below
        ``tail``: a binary search, log2(run) reads."""
        _, rest, rw, _, _, at, *_ = group
        while lo < top:
            mid = (lo + top) // 2
            if self._rest(rest, rw, at, mid) < tail:
                lo = mid + 1
            else:
                top = mid
        return lo

    def sub_before(self, sub: str) -> object:
        """The courier's cut-off (None: all), or ``ABSENT``."""
        if not self._subs_n:
            return ABSENT
        name = sub.encode("utf-8", "surrogatepass")
        h = sub_hash(name)
        bit = h & self._mask
        if not self._seen[bit >> 3] & (1 << (bit & 7)):  # most couriers: not listed
            return ABSENT
        sh, so, n = self._sh, self._so, self._subs_n
        i = bisect_left(sh, h)
        while i < n and sh[i] == h:
            if self._st[so[i] : so[i + 1]] == name:
                before = self._sb[i]
                return None if before == ALL else int(before)
            i += 1
        return ABSENT

    def locate(self, key: bytes) -> tuple[int, bool]:
        """(index of the first id not below ``key`` in its width, whether it is ``key``)."""
        group = self._ids.get(len(key))
        if group is None:
            return 0, False
        hi, second, sw, _, n, at, ebits, pfx, *_ = group
        full = int.from_bytes(key, "big")
        if full >> ebits != pfx:
            return (0 if full >> ebits < pfx else n), False
        full &= (1 << ebits) - 1
        value = full >> (8 * sw)
        i = bisect_left(hi, value)
        if not sw or i == n or hi[i] != value:
            return i, not sw and i < n and hi[i] == value
        end = bisect_right(hi, value, i)
        if sw <= 8:
            low = full & ((1 << (8 * sw)) - 1)
            i = bisect_left(second, low, i, end)
            return i, i < end and second[i] == low
        i = self._first_rest(group, i, end, key[-sw:])
        return i, i < end and self._rest(second, sw, at, i) == key[-sw:]

    # ---- whole columns (compaction) ------------------------------------------------

    def widths(self) -> list[int]:
        return sorted(self._ids)

    def columns(self, width: int) -> IdColumns:
        """A copy of one width's columns, to write into a new table."""
        group = self._ids[width]
        return bytes(group.hi), bytes(group.second), group.n, group.prefix

    def records(self, width: int) -> bytearray:
        group = self._ids[width]
        return records_of(width, group.hi, group.second, group.n, group.prefix)

    def subs(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for i in range(self._subs_n):
            name = str(self._st[self._so[i] : self._so[i + 1]], "utf-8", "surrogatepass")
            before = self._sb[i]
            out[name] = None if before == ALL else int(before)
        return out

    def close(self) -> None:
        """Unmap (views first); the table is empty afterwards."""
        self._ids, self._subs_n, self.count = {}, 0, 0
        for name in ("_sh", "_sb", "_so", "_st"):
            self.__dict__.pop(name, None)
        for view in reversed(self._views):
            view.release()
        self._views = []
        if isinstance(self._buf, mmap.mmap):
            self._buf.close()
        self._buf = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _sub_filter(sh: Any, n: int) -> tuple[int, bytearray]:
    """One bit per hash value modulo a power of two >= 8n: a courier with no entry is
    usually answered by one bit, not a bisect (a set bit is only a maybe)."""
    bits = 1 << 16
    while bits < 8 * n and bits < 1 << 24:
        bits <<= 1
    seen, mask = bytearray(bits // 8), bits - 1
    for h in sh:
        bit = h & mask
        seen[bit >> 3] |= 1 << (bit & 7)
    return mask, seen


def _bucket_index(hi: Any, shift: int) -> array[int]:
    """Where each 16-bit prefix of the ids starts: a lookup bisects ~n/65536 ids."""
    index, at = array("I"), 0
    for b in range(1 << 16):
        at = bisect_left(hi, b << shift, at)
        index.append(at)
    index.append(len(hi))
    return index
