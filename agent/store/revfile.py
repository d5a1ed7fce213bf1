"""The compact, checksummed file format that holds a revocation list on disk.

One million revocations do not fit TinyDB (every write rewrites a JSON document of the
whole table). A list is stored instead as::

    b"GAREVL1\\n" | u32 header length | header JSON | blobs ... | SHA-256 of all before

The header carries the metadata, small tables (revoked couriers, non-hex ids) and the
shape of each blob: ``[name, width, count]``. A blob is ``count`` fixed-width records
(credential ids as raw bytes, 16 bytes for the usual 128-bit cti), so loading is a
slice per record and a million ids take 16 MB on disk. The trailing digest detects a
torn or edited file; the file is replaced atomically, so a valid digest means a whole,
intended version.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.core.errors import CorruptStateError

MAGIC = b"GAREVL1\n"
_LEN = struct.Struct(">I")
_DIGEST = 32

CtiKey = bytes | str  # raw bytes for hex ids (compact, fast), the text otherwise


def cti_key(cti: str) -> CtiKey:
    """The in-memory key for a credential id: its bytes if hex, else the text itself."""
    if cti:
        try:
            return bytes.fromhex(cti)
        except ValueError:
            pass
    return cti


def split_keys(keys: Iterable[CtiKey]) -> tuple[dict[int, list[bytes]], list[str]]:
    """Group byte keys by width (one blob per width) and collect text keys apart."""
    by_width: dict[int, list[bytes]] = {}
    texts: list[str] = []
    for key in keys:
        if isinstance(key, bytes):
            by_width.setdefault(len(key), []).append(key)
        else:
            texts.append(key)
    return by_width, texts


def encode(header: dict[str, Any], blobs: dict[str, dict[int, list[bytes]]]) -> bytes:
    """Serialise ``header`` plus named groups of fixed-width records, with a digest."""
    shape: list[list[Any]] = []
    bodies: list[bytes] = []
    for name, groups in blobs.items():
        for width, records in sorted(groups.items()):
            shape.append([name, width, len(records)])
            bodies.append(b"".join(records))
    head = json.dumps({**header, "blobs": shape}, separators=(",", ":"), ensure_ascii=False)
    head_bytes = head.encode("utf-8")
    parts = [MAGIC, _LEN.pack(len(head_bytes)), head_bytes, *bodies]
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    parts.append(digest.digest())
    return b"".join(parts)


def decode(data: bytes, path: Path) -> tuple[dict[str, Any], dict[str, list[bytes]]]:
    """Parse and verify a file; CorruptStateError if anything is off."""
    fixed = len(MAGIC) + _LEN.size
    if len(data) < fixed + _DIGEST or not data.startswith(MAGIC):
        raise CorruptStateError(f"{path} is not a revocation list file (bad header or empty)")
    body = memoryview(data)[:-_DIGEST]  # no copy of a 16 MB list just to hash it
    if hashlib.sha256(body).digest() != data[-_DIGEST:]:
        raise CorruptStateError(f"{path} fails its checksum (torn write or edited)")
    (head_len,) = _LEN.unpack_from(data, len(MAGIC))
    try:
        header = json.loads(data[fixed : fixed + head_len].decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("the header is not an object")
        shape = header.pop("blobs")
        blobs: dict[str, list[bytes]] = {}
        offset = fixed + head_len
        for name, width, count in shape:
            end = offset + width * count
            if width <= 0 or end > len(body):
                raise ValueError(f"blob {name} runs past the end of the file")
            blobs.setdefault(name, []).extend(
                [data[i : i + width] for i in range(offset, end, width)]
            )
            offset = end
        if offset != len(body):
            raise ValueError("trailing bytes after the last blob")
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptStateError(f"{path} has a valid checksum but a bad layout: {exc}") from exc
    return header, blobs
