"""The delta journal over a revocation table, and folding it in (compaction).

Deltas are small (a day's revocations), so their net effect since the snapshot stays
in dicts, in memory and in ``revocations.journal`` (:mod:`agent.store.revfile` format,
rewritten whole on each delta); lookups check it before the table. Compaction merges
it into a new table: unchanged widths are copied as columns, a changed width is cut
and spliced at the journal's positions (C-speed copies between them), not re-sorted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.store import revfile
from agent.store.revfile import CtiKey, split_keys
from agent.store.revtable import ABSENT, IdColumns, RevTable, id_columns


@dataclass
class Journal:
    """Net changes since the snapshot: True = revoked, False = lifted; subs: before or off."""

    cti: dict[CtiKey, bool]
    sub_set: dict[str, int | None]
    sub_del: set[str]

    @classmethod
    def empty(cls) -> Journal:
        return cls({}, {}, set())

    def copy(self) -> Journal:
        return Journal(dict(self.cti), dict(self.sub_set), set(self.sub_del))

    def size(self) -> int:
        return len(self.cti) + len(self.sub_set) + len(self.sub_del)


def encode_journal(
    journal: Journal, snapshot_version: int | None, version: int, issued_at: int,
    applied_at: float,
) -> bytes:
    on_bytes, on_text = split_keys(k for k, on in journal.cti.items() if on)
    off_bytes, off_text = split_keys(k for k, on in journal.cti.items() if not on)
    return revfile.encode(
        {"kind": "journal", "snapshot_version": snapshot_version, "version": version,
         "issued_at": issued_at, "applied_at": applied_at, "cti_on_text": on_text,
         "cti_off_text": off_text, "sub_set": journal.sub_set,
         "sub_del": sorted(journal.sub_del)},
        {"cti_on": on_bytes, "cti_off": off_bytes},
    )


def decode_journal(header: dict[str, Any], blobs: dict[str, list[bytes]]) -> Journal:
    """The journal in a verified file; KeyError/TypeError/ValueError on a bad header."""
    journal = Journal.empty()
    for key in blobs.get("cti_off", []):
        journal.cti[key] = False
    for key in blobs.get("cti_on", []):
        journal.cti[key] = True
    for text in header["cti_off_text"]:
        journal.cti[str(text)] = False
    for text in header["cti_on_text"]:
        journal.cti[str(text)] = True
    journal.sub_set = {
        str(k): (None if v is None else as_int(v)) for k, v in header["sub_set"].items()
    }
    journal.sub_del = {str(s) for s in header["sub_del"]}
    return journal


def as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def present(table: RevTable, journal: Journal, key: CtiKey) -> bool:
    """Whether ``key`` is revoked by the table with the journal over it."""
    on = journal.cti.get(key)
    if on is not None:
        return on
    return key in table.texts if isinstance(key, str) else table.has_id(key)


def sub_present(table: RevTable, journal: Journal, sub: str) -> bool:
    if sub in journal.sub_set:
        return True
    return sub not in journal.sub_del and table.sub_before(sub) is not ABSENT


def folded(
    table: RevTable, journal: Journal,
) -> tuple[dict[int, IdColumns], dict[str, int | None], set[str]]:
    """The table's content with the journal folded in: columns by width, couriers, texts."""
    changes: dict[int, tuple[list[bytes], list[bytes]]] = {}
    texts = set(table.texts)
    for key, on in journal.cti.items():
        if isinstance(key, str):
            if on:
                texts.add(key)
            else:
                texts.discard(key)
            continue
        ons, offs = changes.setdefault(len(key), ([], []))
        (ons if on else offs).append(key)
    ids: dict[int, IdColumns] = {}
    for width in sorted(set(table.widths()) | set(changes)):
        if width not in changes:
            ids[width] = table.columns(width)
            continue
        ons, offs = changes[width]
        records = _spliced(table, width, ons, offs)
        if records:
            ids[width] = id_columns(width, records, presorted=True)
    subs = table.subs()
    for sub in journal.sub_del:
        subs.pop(sub, None)
    subs.update(journal.sub_set)
    return ids, subs, texts


def _spliced(table: RevTable, width: int, ons: list[bytes], offs: list[bytes]) -> bytearray:
    """One width's sorted ids with ``offs`` cut out and ``ons`` put in at their places."""
    base = table.records(width) if width in table.widths() else bytearray()
    cuts: list[tuple[int, int, bytes]] = []  # (position, 0 insert | 1 delete, id)
    for key in ons:
        at, found = table.locate(key)
        if not found:
            cuts.append((at, 0, key))
    for key in offs:
        at, found = table.locate(key)
        if found:
            cuts.append((at, 1, key))
    if not cuts:
        return base
    cuts.sort()
    out = bytearray()
    done = 0  # ids of base copied or skipped
    for at, kind, key in cuts:
        out += base[done * width : at * width]
        done = max(done, at)
        if kind == 0:
            out += key
        else:
            done = at + 1
    out += base[done * width :]
    return out
