"""Revocation cache: the version rules, lookups, and what survives a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.clock import FixedClock
from agent.core.errors import RevocationListError, StateError
from agent.protocol.revocation import RevocationEntry, RevocationList
from agent.store import RevocationStore

T0 = 1_790_000_000


def cti(n: int) -> str:
    return f"{n:032x}"


def full_list(version: int, ctis: list[str] = (), subs: dict[str, int | None] | None = None,
              issued_at: int = T0) -> RevocationList:
    entries = [RevocationEntry("cti", c) for c in ctis]
    entries += [RevocationEntry("sub", s, b) for s, b in (subs or {}).items()]
    return RevocationList("full", version, None, issued_at, tuple(entries))


def delta_list(base: int, version: int, add: list[str] = (), remove: list[str] = (),
               add_subs: dict[str, int | None] | None = None, remove_subs: list[str] = (),
               issued_at: int = T0) -> RevocationList:
    adds = [RevocationEntry("cti", c) for c in add]
    adds += [RevocationEntry("sub", s, b) for s, b in (add_subs or {}).items()]
    removes = [RevocationEntry("cti", c) for c in remove]
    removes += [RevocationEntry("sub", s) for s in remove_subs]
    return RevocationList("delta", version, base, issued_at, tuple(adds), tuple(removes))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0 + 3600)


def open_store(path: Path, clock: FixedClock) -> RevocationStore:
    return RevocationStore(path, clock=clock)


def test_fresh_store_has_no_list_and_revokes_nothing(tmp_path: Path, clock: FixedClock) -> None:
    with open_store(tmp_path, clock) as store:
        assert store.version is None
        assert store.entries == 0
        assert not store.is_revoked(cti(1), "rider-1", T0)
        assert store.status().to_json()["version"] is None
        assert store.status().age_s is None


def test_full_list_revokes_ids_and_couriers(tmp_path: Path, clock: FixedClock) -> None:
    with open_store(tmp_path, clock) as store:
        store.apply(full_list(3, [cti(1), "not-hex-id"], {"rider-7": None, "rider-8": T0}))
        assert store.version == 3
        assert store.entries == 4
        assert store.is_revoked(cti(1), "anyone", T0)
        assert store.is_revoked(cti(1).upper(), "anyone", T0)
        assert store.is_revoked("not-hex-id", "anyone", T0)
        assert not store.is_revoked(cti(2), "anyone", T0)
        assert store.is_revoked(cti(2), "rider-7", T0 + 10**6)  # every credential
        assert store.is_revoked(cti(2), "rider-8", T0 - 1)  # issued before the cut-off
        assert not store.is_revoked(cti(2), "rider-8", T0)  # re-issued after it
        status = store.status().to_json()
        assert status == status | {"version": 3, "entries": 4, "age_s": 3600.0}


def test_older_or_equal_full_list_is_refused_and_changes_nothing(
    tmp_path: Path, clock: FixedClock
) -> None:
    with open_store(tmp_path, clock) as store:
        store.apply(full_list(5, [cti(1)]))
        for version in (5, 4):
            with pytest.raises(RevocationListError, match="older than or equal"):
                store.apply(full_list(version, [cti(2)]))
        assert store.version == 5
        assert store.is_revoked(cti(1), "x", T0)
        assert not store.is_revoked(cti(2), "x", T0)


def test_delta_applies_only_on_its_exact_base(tmp_path: Path, clock: FixedClock) -> None:
    with open_store(tmp_path, clock) as store:
        with pytest.raises(RevocationListError, match="no list installed") as nothing:
            store.apply(delta_list(1, 2, [cti(9)]))
        assert nothing.value.gap
        store.apply(full_list(1, [cti(1), cti(2)], {"rider-1": None}))
        with pytest.raises(RevocationListError) as gap:
            store.apply(delta_list(2, 3, [cti(3)]))
        assert gap.value.gap
        assert "installed version 1, delta needs base 2" in str(gap.value)
        assert not store.is_revoked(cti(3), "x", T0)
        store.apply(delta_list(1, 2, [cti(3)], [cti(1)], {"rider-2": T0}, ["rider-1"]))
        assert store.version == 2
        assert store.is_revoked(cti(3), "x", T0)
        assert not store.is_revoked(cti(1), "x", T0)
        assert store.is_revoked(cti(2), "x", T0)
        assert not store.is_revoked(cti(5), "rider-1", T0)
        assert store.is_revoked(cti(5), "rider-2", T0 - 5)
        with pytest.raises(RevocationListError, match="older than or equal"):
            store.apply(delta_list(2, 2, [cti(4)]))
        assert store.entries == 3


def test_state_survives_restart_with_deltas_and_compaction(
    tmp_path: Path, clock: FixedClock
) -> None:
    with RevocationStore(tmp_path, clock=clock, journal_limit=3) as store:
        store.apply(full_list(1, [cti(n) for n in range(10)], {"rider-1": None}))
        store.apply(delta_list(1, 2, [cti(100)], [cti(0)]))
        assert (tmp_path / "revocations.journal").exists()
        store.apply(delta_list(2, 3, [cti(101), cti(102)], [cti(1)], remove_subs=["rider-1"]))
        assert not (tmp_path / "revocations.journal").exists()  # compacted: over the limit
        assert not store.compaction_due
        store.apply(delta_list(3, 4, [cti(103)], add_subs={"rider-9": T0}))
        assert store.compaction_due  # past half the limit: the daemon compacts when idle
        store.compact()
        assert not store.compaction_due and not (tmp_path / "revocations.journal").exists()
        store.apply(delta_list(4, 5, [cti(104)]))
        expected = {cti(n) for n in range(2, 10)} | {cti(100), cti(101), cti(102), cti(103),
                                                     cti(104)}
    with RevocationStore(tmp_path, clock=clock) as again:
        assert again.version == 5
        assert again.entries == len(expected) + 1
        for n in [*range(10), 100, 101, 102, 103, 104]:
            assert again.is_revoked(cti(n), "x", T0) == (cti(n) in expected)
        assert not again.is_revoked(cti(50), "rider-1", T0)
        assert again.is_revoked(cti(50), "rider-9", T0 - 1)
        assert [h["version"] for h in again.history()] == [1, 2, 3, 4, 5]


def test_full_list_replaces_everything(tmp_path: Path, clock: FixedClock) -> None:
    with open_store(tmp_path, clock) as store:
        store.apply(full_list(1, [cti(1)], {"rider-1": None}))
        store.apply(delta_list(1, 2, [cti(2)]))
        store.apply(full_list(7, [cti(3)]))
        assert (store.is_revoked(cti(1), "rider-1", T0), store.is_revoked(cti(3), "x", T0)) == (
            False, True)
    with open_store(tmp_path, clock) as again:
        assert again.version == 7
        assert again.entries == 1
        assert not again.is_revoked(cti(2), "x", T0)


def test_second_writer_is_refused_with_a_clear_message(tmp_path: Path, clock: FixedClock) -> None:
    with open_store(tmp_path, clock):
        with pytest.raises(StateError, match="in use by another process"):
            RevocationStore(tmp_path, clock=clock)
        reader = RevocationStore(tmp_path, clock=clock, read_only=True)
        assert reader.version is None


def test_read_only_store_sees_the_installed_list_and_cannot_apply(
    tmp_path: Path, clock: FixedClock
) -> None:
    with open_store(tmp_path, clock) as store:
        store.apply(full_list(2, [cti(1)]))
    reader = RevocationStore(tmp_path, clock=clock, read_only=True)
    assert (reader.version, reader.entries) == (2, 1)
    with pytest.raises(StateError, match="read-only"):
        reader.apply(full_list(3, []))


def test_a_delta_naming_a_courier_twice_keeps_the_stricter_entry_like_a_full_list(
    tmp_path: Path, clock: FixedClock
) -> None:
    twice = (RevocationEntry("sub", "rider-3", None), RevocationEntry("sub", "rider-3", T0),
             RevocationEntry("sub", "rider-4", T0), RevocationEntry("sub", "rider-4", T0 + 9))
    with open_store(tmp_path, clock) as store:
        store.apply(RevocationList("full", 1, None, T0, twice))
        assert store.is_revoked(cti(1), "rider-3", T0 + 50) and store.is_revoked(
            cti(1), "rider-4", T0 + 5)
        store.apply(full_list(2))
        lifted_then_added = (RevocationEntry("cti", cti(7)),)
        store.apply(RevocationList("delta", 3, 2, T0, twice + lifted_then_added,
                                   lifted_then_added))
        for reopened in (False, True):
            if reopened:
                store.close()
                store = open_store(tmp_path, clock)
            assert store.is_revoked(cti(1), "rider-3", T0 + 50)  # "all", not "before T0"
            assert store.is_revoked(cti(1), "rider-4", T0 + 5)  # before T0 + 9
            assert store.is_revoked(cti(7), "x", T0)  # removed and added: revoked
        store.close()
