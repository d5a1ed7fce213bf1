"""The compact revocation path: the streaming reader of signed lists and the sorted,
memory-mapped table behind ``RevocationStore`` (same answers as a set, far less memory)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agent.core.clock import FixedClock
from agent.core.errors import RevocationListError
from agent.protocol.revocation import (
    DOC_TYPE,
    RevocationEntry,
    RevocationList,
    parse_revocation_list,
    sign_revocation_list,
)
from agent.protocol.revstream import compact_from_list, parse_compact_list
from agent.protocol.signed_doc import sign_document
from agent.store import RevocationStore, revbuild, revfile, revtable
from tests.credkit import NOW, Kit

T = int(NOW)


def _mixed(rng: random.Random, n: int) -> list[RevocationEntry]:
    """Ids of every width, repeats, and couriers between them, in no order."""
    entries = []
    for i in range(n):
        width = rng.choice((16, 16, 16, 1, 7, 8, 9, 24, 32))
        entries.append(RevocationEntry("cti", rng.randbytes(width).hex()))
        if i % 97 == 0:
            entries.append(RevocationEntry("sub", f"rider-{i % 13}", rng.choice((None, T - i))))
    entries += entries[:25]  # repeats
    rng.shuffle(entries)
    return entries


def _unsorted_signed(kit: Kit, lst: RevocationList) -> bytes:
    """A list in wire order as an older centre signed it (not in canonical order)."""
    body = {"k": lst.kind, "v": lst.version, "b": lst.base, "t": lst.issued_at,
            "a": [bytes.fromhex(e.value) if e.kind == "cti" else [e.value, e.before]
                  for e in lst.add],
            "r": [bytes.fromhex(e.value) if e.kind == "cti" else [e.value, e.before]
                  for e in lst.remove]}
    return sign_document(DOC_TYPE, body, kit.ops, kit.ops_kid)


@pytest.mark.parametrize("canonical", [True, False])
def test_the_streaming_reader_reads_what_the_object_reader_reads(canonical: bool) -> None:
    kit, rng = Kit(), random.Random(7)
    lst = RevocationList("full", 5, None, T, tuple(_mixed(rng, 3000)))
    data = (sign_revocation_list(lst, kit.ops, kit.ops_kid) if canonical
            else _unsorted_signed(kit, lst))
    compact = parse_compact_list(data, kit.keyring, NOW)
    reference = compact_from_list(parse_revocation_list(data, kit.keyring, NOW))
    assert compact.kind == "full" and compact.version == 5 and compact.add.count == len(lst.add)
    assert compact.add.subs == reference.add.subs
    assert compact.add.ctis == reference.add.ctis  # same ids, same widths, same order


def test_the_streaming_reader_refuses_what_the_object_reader_refuses() -> None:
    kit = Kit()
    lst = RevocationList("full", 2, None, T, (RevocationEntry("cti", "aa" * 16),) * 40)
    data = bytearray(sign_revocation_list(lst, kit.ops, kit.ops_kid))
    tampered = bytes(data).replace(bytes.fromhex("aa" * 16), bytes.fromhex("ab" * 16), 1)
    for bad, why in ((tampered, "bad_signature"), (bytes(data[:-1]), "malformed")):
        with pytest.raises(RevocationListError, match=why):
            parse_compact_list(bad, kit.keyring, NOW)
    with pytest.raises(RevocationListError, match="at most 10 entries"):
        parse_compact_list(bytes(data), kit.keyring, NOW, max_entries=10)
    bogus = {"k": "full", "v": 3, "b": None, "t": T, "a": [b""], "r": []}
    with pytest.raises(RevocationListError, match="neither a cti"):
        parse_compact_list(sign_document(DOC_TYPE, bogus, kit.ops, kit.ops_kid),
                           kit.keyring, NOW)
    removals = {"k": "full", "v": 3, "b": None, "t": T, "a": [], "r": [b"\x01"]}
    with pytest.raises(RevocationListError, match="carries removals"):
        parse_compact_list(sign_document(DOC_TYPE, removals, kit.ops, kit.ops_kid),
                           kit.keyring, NOW)
    before_1970 = {"k": "full", "v": 3, "b": None, "t": -1, "a": [], "r": []}
    signed = sign_document(DOC_TYPE, before_1970, kit.ops, kit.ops_kid)
    with pytest.raises(RevocationListError, match="unexpected CBOR item"):  # no negatives
        parse_compact_list(signed, kit.keyring, NOW)
    with pytest.raises(RevocationListError, match="issued_at is not a Unix time"):
        parse_revocation_list(signed, kit.keyring, NOW)


@pytest.mark.parametrize("canonical", [True, False])
def test_a_big_list_answers_like_a_set_sorted_or_not(tmp_path: Path, canonical: bool) -> None:
    kit, rng = Kit(), random.Random(11)
    entries = _mixed(rng, 20_000)
    lst = RevocationList("full", 1, None, T, tuple(entries))
    data = (sign_revocation_list(lst, kit.ops, kit.ops_kid) if canonical
            else _unsorted_signed(kit, lst))
    ids = {e.value for e in entries if e.kind == "cti"}
    subs = {e.value for e in entries if e.kind == "sub"}
    with RevocationStore(tmp_path, clock=FixedClock(NOW)) as store:
        store.apply(parse_compact_list(data, kit.keyring, NOW))
        assert store.entries == len(ids) + len(subs)
        probes = list(ids)[:3000] + [rng.randbytes(16).hex() for _ in range(3000)]
        for cti in probes:
            assert store.is_revoked(cti, "nobody", T) == (cti in ids), cti
    with RevocationStore(tmp_path, clock=FixedClock(NOW)) as store:  # the mapped file
        assert all(store.is_revoked(c, "nobody", T) == (c in ids) for c in probes[::7])


def test_ids_sharing_their_first_8_bytes_are_told_apart(tmp_path: Path) -> None:
    prefix = "0102030405060708"
    revoked = [prefix + f"{n:016x}" for n in (5, 9, 200)] + [prefix]  # and one of 8 bytes
    with RevocationStore(tmp_path, clock=FixedClock(NOW)) as store:
        store.apply(RevocationList("full", 1, None, T,
                                   tuple(RevocationEntry("cti", c) for c in revoked)))
        for n in range(260):
            assert store.is_revoked(prefix + f"{n:016x}", "x", T) == (n in (5, 9, 200))
        assert store.is_revoked(prefix, "x", T)
        assert not store.is_revoked(prefix[:-2], "x", T)


def test_counter_ids_with_one_long_shared_prefix_are_found_by_bisection(
        tmp_path: Path) -> None:
    revoked = {f"{n:032x}" for n in range(0, 15000, 3)}  # 5,000 ids sharing 14 bytes
    with RevocationStore(tmp_path, clock=FixedClock(NOW), journal_limit=500) as store:
        store.apply(RevocationList("full", 1, None, T,
                                   tuple(RevocationEntry("cti", c) for c in revoked)))
        store.apply(RevocationList("delta", 2, 1, T,
                                   tuple(RevocationEntry("cti", f"{n:032x}") for n in (1, 4)),
                                   (RevocationEntry("cti", f"{0:032x}"),)))
        revoked = (revoked | {f"{1:032x}", f"{4:032x}"}) - {f"{0:032x}"}
        for n in range(15100):
            assert store.is_revoked(f"{n:032x}", "x", T) == (f"{n:032x}" in revoked), n
        store.compact()
        assert store.entries == len(revoked)
        assert all(store.is_revoked(f"{n:032x}", "x", T) == (f"{n:032x}" in revoked)
                   for n in range(0, 15100, 7))


def test_a_courier_hash_collision_neither_grants_nor_denies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (revbuild, revtable):  # the writer's and the reader's: all collide
        monkeypatch.setattr(module, "sub_hash", lambda name: 42)
    subs = {f"rider-{n}": (None if n % 2 else T + n) for n in range(0, 40, 3)}
    entries = tuple(RevocationEntry("sub", s, b) for s, b in subs.items())
    with RevocationStore(tmp_path, clock=FixedClock(NOW)) as store:
        store.apply(RevocationList("full", 1, None, T, entries))
        for n in range(40):
            name = f"rider-{n}"
            before = subs.get(name, -1)
            expected = name in subs and (before is None or before > T)
            assert store.is_revoked("ff" * 16, name, T) == expected, name


def test_deltas_and_compaction_keep_the_same_answers(tmp_path: Path) -> None:
    rng = random.Random(3)
    model = {rng.randbytes(16).hex() for _ in range(5000)}
    with RevocationStore(tmp_path, clock=FixedClock(NOW), journal_limit=600) as store:
        store.apply(RevocationList("full", 1, None, T,
                                   tuple(RevocationEntry("cti", c) for c in model)))
        for version in range(2, 12):
            lift = rng.sample(sorted(model), 60)
            add = [rng.randbytes(16).hex() for _ in range(90)] + lift[:5]  # lifted, re-added
            store.apply(RevocationList(
                "delta", version, version - 1, T,
                tuple(RevocationEntry("cti", c) for c in add),
                tuple(RevocationEntry("cti", c) for c in lift)))
            model = (model - set(lift)) | set(add)
            assert store.entries == len(model)
        assert store.version == 11
        probes = sorted(model)[::5] + [rng.randbytes(16).hex() for _ in range(500)]
        assert all(store.is_revoked(c, "x", T) == (c in model) for c in probes)
        store.compact()
        assert store.entries == len(model)
        assert all(store.is_revoked(c, "x", T) == (c in model) for c in probes)
    with RevocationStore(tmp_path, clock=FixedClock(NOW)) as store:
        assert store.entries == len(model) and store.version == 11


def test_a_snapshot_in_the_older_format_is_read_and_rewritten(tmp_path: Path) -> None:
    old = revfile.encode(
        {"kind": "snapshot", "version": 4, "issued_at": T, "applied_at": NOW,
         "cti_text": ["not-hex"], "subs": {"rider-1": None, "rider-2": T}},
        {"cti": {16: [bytes([9]) * 16, bytes([1]) * 16]}},
    )
    (tmp_path / "revocations.snap").write_bytes(old)
    with RevocationStore(tmp_path, read_only=True) as store:  # read-only: no rewrite
        assert store.version == 4 and store.entries == 5
    assert (tmp_path / "revocations.snap").read_bytes() == old
    with RevocationStore(tmp_path, clock=FixedClock(NOW)) as store:
        assert store.version == 4 and store.entries == 5 and store.problems() == []
        assert store.is_revoked("09" * 16, "x", T) and store.is_revoked("not-hex", "x", T)
        assert store.is_revoked("00" * 16, "rider-1", T)
        assert store.is_revoked("00" * 16, "rider-2", T - 1)
        assert not store.is_revoked("00" * 16, "rider-2", T)
    assert (tmp_path / "revocations.snap").read_bytes().startswith(revtable.MAGIC)
