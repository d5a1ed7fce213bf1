"""Atomic TinyDB storage, Meta and the replay cache: durable, strict, self-pruning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tinydb import TinyDB

from agent.core.clock import FixedClock
from agent.core.errors import CorruptStateError, StateError
from agent.store import Meta, ReplayCache
from agent.store.atomic_storage import AtomicJSONStorage, open_tinydb

T0 = 1_790_000_000.0


def test_storage_writes_by_replacing_the_file(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    db = TinyDB(path, storage=AtomicJSONStorage)
    db.insert({"a": 1})
    inode = path.stat().st_ino
    db.insert({"a": 2})
    assert path.stat().st_ino != inode  # a new file renamed over, never rewritten in place
    assert not list(tmp_path.glob(".db.json.tmp-*"))
    assert json.loads(path.read_text())["_default"]["2"] == {"a": 2}
    db.close()
    assert [d["a"] for d in TinyDB(path, storage=AtomicJSONStorage).all()] == [1, 2]


@pytest.mark.parametrize(
    "content", [b"", b"   \n", b'{"_default": {"1": {"a"', b"\xff\xfe", b"[1]"]
)
def test_empty_or_garbage_file_is_corruption_never_empty_state(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "db.json"
    path.write_bytes(content)
    with pytest.raises(CorruptStateError, match="db.json"):
        AtomicJSONStorage(path)


def test_open_tinydb_moves_a_corrupt_file_aside_and_reports_it(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    path.write_bytes(b"")
    problems: list[str] = []
    db = open_tinydb(path, T0, problems)
    assert db.all() == []
    assert len(problems) == 1 and "empty" in problems[0]
    aside = list(tmp_path.glob("db.json.corrupt-*"))
    assert [p.name for p in aside] == ["db.json.corrupt-20260921T141320Z"]
    db.insert({"ok": True})  # and the agent keeps working
    assert TinyDB(path, storage=AtomicJSONStorage).all() == [{"ok": True}]


def test_read_only_storage_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    TinyDB(path, storage=AtomicJSONStorage).insert({"a": 1})
    ro = TinyDB(path, storage=AtomicJSONStorage, read_only=True)
    with pytest.raises(StateError, match="read-only"):
        ro.insert({"a": 2})


def test_meta_values_survive_restart(tmp_path: Path) -> None:
    meta = Meta(tmp_path)
    meta.set("time_floor", 1_790_000_000)
    meta.set("last_alarm", {"kind": "tamper", "at": "2026-09-21T14:13:20Z"})
    meta.set("time_floor", 1_790_000_500)
    meta.close()
    again = Meta(tmp_path)
    assert again.get("time_floor") == 1_790_000_500
    assert again.get("last_alarm")["kind"] == "tamper"
    assert again.get("missing", 7) == 7
    with pytest.raises(StateError, match="not JSON"):
        again.set("bad", object())


def test_meta_recovers_from_a_garbage_file(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text("{garbage")
    meta = Meta(tmp_path, clock=FixedClock(T0))
    assert meta.get("time_floor") is None
    assert "not valid JSON" in meta.problems()[0]
    meta.set("time_floor", 5)
    assert Meta(tmp_path).get("time_floor") == 5


def test_replay_cache_remembers_across_restart_and_prunes(tmp_path: Path) -> None:
    clock = FixedClock(T0)
    cache = ReplayCache(tmp_path, clock=clock, prune_every_s=10)
    cache.remember("p1", T0 + 30)
    cache.remember("p2", T0 + 5)
    assert cache.seen("p1") and cache.seen("p2") and not cache.seen("p3")
    cache.close()
    clock.advance(20)
    again = ReplayCache(tmp_path, clock=clock, prune_every_s=10)
    assert again.seen("p1")
    assert not again.seen("p2")  # its window passed: pruned on start
    clock.advance(20)
    again.remember("p3", T0 + 100)  # pruning also happens as keys are added
    assert (again.seen("p1"), len(again)) == (False, 1)
    again.close()
    assert ReplayCache(tmp_path, clock=clock).seen("p3")


def test_replay_cache_recovers_from_a_torn_file(tmp_path: Path) -> None:
    (tmp_path / "replay.json").write_text('{"replay": {"1": {"k": "p1", "u"')
    cache = ReplayCache(tmp_path, clock=FixedClock(T0))
    assert not cache.seen("p1")
    assert cache.problems() and list(tmp_path.glob("replay.json.corrupt-*"))
    cache.remember("p2", T0 + 30)
    assert cache.seen("p2")


def test_read_only_replay_cache_never_writes_the_file(tmp_path: Path) -> None:
    clock = FixedClock(T0)
    writer = ReplayCache(tmp_path, clock=clock)
    writer.remember("old", T0 + 5)
    writer.remember("live", T0 + 60)
    writer.close()
    on_disk = (tmp_path / "replay.json").read_bytes()
    clock.advance(30)
    reader = ReplayCache(tmp_path, clock=clock, read_only=True, prune_every_s=0)
    assert reader.seen("live") and not reader.seen("old")  # pruned in memory only
    reader.remember("new", T0 + 90)
    assert reader.seen("new")
    reader.close()
    assert (tmp_path / "replay.json").read_bytes() == on_disk
    assert not ReplayCache(tmp_path / "absent", read_only=True).seen("x")
    assert not (tmp_path / "absent").exists()  # a reader creates nothing


def test_read_only_replay_cache_reports_a_corrupt_file_and_moves_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "replay.json").write_text("")
    with pytest.raises(CorruptStateError, match="empty"):
        ReplayCache(tmp_path, read_only=True)
    assert [p.name for p in tmp_path.iterdir()] == ["replay.json"]
