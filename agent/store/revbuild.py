"""Writing revocation tables: ids sorted into columns, and the file that holds them.

The format is described in :mod:`agent.store.revtable`, which reads it. Splitting and
checking the order run at C speed on whole buffers (strided slices, ``map`` over
``memoryview`` casts); only lists not in byte order (older centres) are sorted here.
Only :mod:`agent.store` modules import this.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import operator
import struct
import sys
import zlib
from array import array
from collections.abc import Iterator
from itertools import islice, pairwise, starmap
from pathlib import Path
from typing import Any

from agent.store.files import atomic_write_parts

MAGIC = b"GAREVT1\n"
LEN = struct.Struct(">I")
DIGEST = 32
ALL = (1 << 64) - 1  # ``sb``: a courier entry without a cut-off revokes every credential
ABSENT = object()
_SORT_CHUNK = 1 << 16
LITTLE = sys.byteorder == "little"

IdColumns = tuple[bytes | bytearray, bytes | bytearray, int, bytes]  # hi, lo|rest, n, prefix


def second_name(e: int) -> str:
    """The second column for ``e`` bytes after the prefix: ``lo`` (a u64) up to 16,
    ``rest`` (raw) above."""
    return "lo" if e <= 16 else "rest"


def sub_hash(name: bytes) -> int:
    """CRC-32 of the id's UTF-8: 40 ns (blake2b is 500); a hit is confirmed on the text."""
    return zlib.crc32(name)


def id_columns(width: int, records: bytearray, *, presorted: bool = False) -> IdColumns:
    """Columns for ids of one width, given row-major in any order (repeats allowed).

    In byte order already (the centre signs full lists so): C-speed column splits and
    one C-speed order check. Otherwise sorted here in 64K-id chunks merged (slower, and
    one extra copy of the ids: older centres' lists). A prefix every id shares (counters:
    their leading zero bytes) is kept once, so ``hi`` holds the bytes that differ."""
    count = len(records) // width
    prefix = _common_prefix(width, records, count)
    hi, second = _split(width, records, count, len(prefix))
    if not presorted and not _ordered(hi, second if width - len(prefix) <= 16 else None,
                                      width - len(prefix)):
        records = _sort_unique(width, records)
        count = len(records) // width
        prefix = _common_prefix(width, records, count)
        hi, second = _split(width, records, count, len(prefix))
    return hi, second, count, prefix


def _common_prefix(width: int, records: bytearray | bytes, count: int) -> bytes:
    """The leading bytes all ids share (at most width - 1), by C-speed strided compares."""
    p = 0
    while p < width - 1 and count and (
            records[p::width] == bytes([records[p]]) * count):
        p += 1
    return bytes(records[:p])


def _split(width: int, records: bytearray | bytes, count: int,
           p: int) -> tuple[bytearray, bytes | bytearray]:
    """The ``hi`` column of the bytes after the prefix, and the second column: ``lo``
    (u64) when 9-16 bytes follow the prefix, raw ``rest`` beyond, empty up to 8."""
    e = width - p
    hi = _u64_column(records, width, p, min(e, 8), count)
    if e <= 8:
        return hi, b""
    if e <= 16:
        return hi, _u64_column(records, width, p + 8, e - 8, count)
    tail = e - 8
    rest = bytearray(tail * count)
    for j in range(tail):  # one byte column at a time: one n-byte temporary, not a copy
        rest[j::tail] = records[p + 8 + j :: width]
    return hi, rest


def _u64_column(records: bytearray | bytes, width: int, start: int, k: int,
                count: int) -> bytearray:
    """One native u64 per id: the big-endian value of its ``k`` bytes from ``start``."""
    out = bytearray(8 * count)
    for j in range(k):  # byte j is the (k-1-j)th least significant of the value
        out[(k - 1 - j if LITTLE else 8 - k + j) :: 8] = records[start + j :: width]
    return out


def _wide(high: int, low: int) -> int:
    return high << 64 | low


def _ordered(hi: bytearray, lo: bytes | bytearray | None, e: int) -> bool:
    """Strictly ascending (so no repeats), checked in C for distinct ``hi``; ids whose
    ``hi`` repeat cost one Python step each (a longer id, e > 16: sorted instead)."""
    hv = memoryview(hi).cast("Q")
    lv = None if lo is None or e <= 8 else memoryview(lo).cast("Q")
    try:
        if all(map(operator.lt, hv, islice(hv, 1, None))):
            return True
        if lv is None or not all(map(operator.le, hv, islice(hv, 1, None))):
            return False
        return all(starmap(operator.lt, pairwise(map(_wide, hv, lv))))
    finally:
        hv.release()
        if lv is not None:
            lv.release()


def _sort_unique(width: int, records: bytearray) -> bytearray:
    """Sort and de-duplicate fixed-width ids with at most one chunk of objects alive."""
    chunk = _SORT_CHUNK * width
    runs = []
    for start in range(0, len(records), chunk):
        part = records[start : start + chunk]
        records[start : start + chunk] = b"".join(
            sorted(part[i : i + width] for i in range(0, len(part), width))
        )
        runs.append((start, min(start + chunk, len(records))))

    def run(lo: int, hi: int) -> Iterator[bytes]:
        for i in range(lo, hi, width):
            yield bytes(records[i : i + width])

    out = bytearray()
    last = None
    for rec in heapq.merge(*(run(lo, hi) for lo, hi in runs)):
        if rec != last:
            out += rec
            last = rec
    return out


def records_of(width: int, hi: Any, second: Any, count: int, prefix: bytes) -> bytearray:
    """The ids of one width back in row-major form (compaction merges on it)."""
    out = bytearray(width * count)
    p = len(prefix)
    e = width - p
    for j in range(p):
        out[j::width] = prefix[j : j + 1] * count
    for start, k, column in ((p, min(e, 8), hi), (p + 8, e - 8, second)):
        if k <= 0:
            break
        if k > 8:  # raw rest
            for j in range(k):
                out[start + j :: width] = column[j::k]
            break
        raw = column if isinstance(column, bytes | bytearray) else memoryview(column).cast("B")
        for j in range(k):
            out[start + j :: width] = raw[(k - 1 - j if LITTLE else 8 - k + j) :: 8]
    return out


def write_table(
    path: Path, meta: dict[str, Any], ids: dict[int, IdColumns],
    subs: dict[str, int | None], texts: set[str],
) -> None:
    """Write a table atomically (temp, fsync, rename, folder fsync)."""
    atomic_write_parts(path, table_parts(meta, ids, subs, texts))


def table_parts(
    meta: dict[str, Any], ids: dict[int, IdColumns], subs: dict[str, int | None],
    texts: set[str],
) -> list[bytes | bytearray | memoryview]:
    """The pieces of a table file, digest last (written one after the other)."""
    rows = sorted((sub_hash(n.encode("utf-8", "surrogatepass")),
                   n.encode("utf-8", "surrogatepass"), b) for n, b in subs.items())
    names = [r[1] for r in rows]
    offsets, at = array("Q", [0]), 0
    for text in names:
        at += len(text)
        offsets.append(at)
    columns: list[tuple[str, bytes | bytearray | memoryview]] = []
    for width, (hi, second, _count, prefix) in sorted(ids.items()):
        columns.append((f"hi{width}", hi))
        if second:
            columns.append((f"{second_name(width - len(prefix))}{width}", second))
    sub_cols = {"sh": array("Q", [r[0] for r in rows]),  # u64 though CRC-32: aligned
                "sb": array("Q", [ALL if r[2] is None else r[2] for r in rows]),
                "so": offsets}
    for label, numbers in sub_cols.items():
        if not LITTLE:
            numbers.byteswap()
        columns.append((label, numbers.tobytes()))
    columns.append(("st", b"".join(names)))
    header = {**meta, "cti_text": sorted(texts), "subs": len(rows),
              "ids": [[w, c[2], c[3].hex()] for w, c in sorted(ids.items())], "columns": []}
    head = _header_bytes(header, columns)
    parts: list[bytes | bytearray | memoryview] = [MAGIC, LEN.pack(len(head)), head]
    for _, col in columns:
        parts += [col, b"\0" * (-len(col) % 8)]
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return [*parts, digest.digest()]


def _header_bytes(header: dict[str, Any], columns: list[tuple[str, Any]]) -> bytes:
    """The header with each column's offset; padded so the first column is 8-aligned."""
    size = 0
    while True:
        at, shape = len(MAGIC) + LEN.size + size, []
        for name, col in columns:
            shape.append([name, at, len(col)])
            at += len(col) + (-len(col) % 8)
        head = json.dumps({**header, "columns": shape}, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")
        head += b" " * (-(len(MAGIC) + LEN.size + len(head)) % 8)
        if len(head) == size:
            return head
        size = len(head)
