"""Torn and garbage files on disk: moved aside, reported, recovered, the agent runs on."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.clock import FixedClock
from agent.core.errors import RevocationListError
from agent.store import EntryLog, RevocationStore
from tests.test_store_revocations import T0, cti, delta_list, full_list


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0 + 60)


def install_two_versions(path: Path, clock: FixedClock) -> None:
    with RevocationStore(path, clock=clock) as store:
        store.apply(full_list(1, [cti(1)]))
        store.apply(full_list(2, [cti(1), cti(2)]))


def aside(path: Path, name: str) -> list[str]:
    return sorted(p.name for p in path.glob(f"{name}.corrupt-*"))


def test_torn_list_falls_back_to_the_last_good_copy(tmp_path: Path, clock: FixedClock) -> None:
    install_two_versions(tmp_path, clock)
    snap = tmp_path / "revocations.snap"
    snap.write_bytes(snap.read_bytes()[:-7])  # torn tail
    with RevocationStore(tmp_path, clock=clock) as store:
        assert store.version == 1
        assert store.is_revoked(cti(1), "x", T0) and not store.is_revoked(cti(2), "x", T0)
        problems = store.status().problems
        assert any("fails its checksum" in p for p in problems)
        assert any("last good revocation list copy, version 1" in p for p in problems)
        assert aside(tmp_path, "revocations.snap")
        store.apply(full_list(3, [cti(3)]))  # the centre's next full list installs normally
    with RevocationStore(tmp_path, clock=clock) as again:
        assert (again.version, again.problems()) == (3, [])


@pytest.mark.parametrize("garbage", [b"", b"GAREVL1\n\x00\x00", b"hello world" * 10])
def test_garbage_list_without_a_good_copy_means_no_list(
    tmp_path: Path, clock: FixedClock, garbage: bytes
) -> None:
    with RevocationStore(tmp_path, clock=clock) as store:
        store.apply(full_list(1, [cti(1)]))
    (tmp_path / "revocations.snap").write_bytes(garbage)
    with RevocationStore(tmp_path, clock=clock) as store:
        assert store.version is None  # never "an empty list that revokes nothing" silently
        assert any("waiting for a full list" in p for p in store.problems())
        store.apply(full_list(2, [cti(2)]))
        assert store.is_revoked(cti(2), "x", T0)


def test_bit_flip_in_a_list_is_detected(tmp_path: Path, clock: FixedClock) -> None:
    install_two_versions(tmp_path, clock)
    snap = tmp_path / "revocations.snap"
    data = bytearray(snap.read_bytes())
    data[-40] ^= 0x01  # inside the id records
    snap.write_bytes(bytes(data))
    with RevocationStore(tmp_path, clock=clock) as store:
        assert store.version == 1
        assert aside(tmp_path, "revocations.snap")


def test_torn_journal_drops_to_the_snapshot_and_asks_for_a_full_list(
    tmp_path: Path, clock: FixedClock
) -> None:
    with RevocationStore(tmp_path, clock=clock) as store:
        store.apply(full_list(1, [cti(1)]))
        store.apply(delta_list(1, 2, [cti(2)]))
    journal = tmp_path / "revocations.journal"
    journal.write_bytes(journal.read_bytes()[:20])
    with RevocationStore(tmp_path, clock=clock) as store:
        assert store.version == 1
        assert store.problems() and aside(tmp_path, "revocations.journal")
        with pytest.raises(RevocationListError, match="installed version 1, delta needs base 2"):
            store.apply(delta_list(2, 3, [cti(3)]))


def test_garbage_metadata_does_not_lose_the_list(tmp_path: Path, clock: FixedClock) -> None:
    install_two_versions(tmp_path, clock)
    (tmp_path / "revocations.json").write_bytes(b"\x00" * 64)
    with RevocationStore(tmp_path, clock=clock) as store:
        assert (store.version, store.entries) == (2, 2)
        assert aside(tmp_path, "revocations.json")
    with RevocationStore(tmp_path, clock=clock) as again:
        assert again.problems() == []  # metadata rewritten from the list files


def test_stray_temp_files_from_a_killed_writer_are_cleaned(
    tmp_path: Path, clock: FixedClock
) -> None:
    install_two_versions(tmp_path, clock)
    (tmp_path / ".revocations.snap.tmp-99999").write_bytes(b"half a list")
    with RevocationStore(tmp_path, clock=clock) as store:
        assert store.version == 2
    assert not list(tmp_path.glob(".*tmp-*"))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_entry_log_is_moved_aside_and_a_new_one_starts(
    tmp_path: Path, clock: FixedClock, damage: str
) -> None:
    with EntryLog(tmp_path, clock=clock) as log:
        for n in range(300):
            log.append({"kind": "scan", "sub": f"rider-{n}", "pad": "x" * 200})
    db = tmp_path / "outbox.db"
    if damage == "garbage":
        db.write_bytes(b"this is not sqlite" * 100)
    else:
        db.write_bytes(db.read_bytes()[: 4096 * 3])
    with EntryLog(tmp_path, clock=clock) as log:
        status = log.status()
        # Without meta.json (no other copy) this log cannot know what it had: it says so.
        assert status.problems and "unreadable" in status.problems[0]
        first = log.pending()[0]
        assert first.event["alarm"] == "entry_log_recovered"  # the centre learns why
        assert log.append({"kind": "scan"}).seq == 2
    assert aside(tmp_path, "outbox.db")
