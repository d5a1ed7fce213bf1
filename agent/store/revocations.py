"""The gate's revocation cache: O(1) lookups in memory, crash-safe files on disk.

On disk (``[state] dir``), all replaced atomically (temp + fsync + rename + dir fsync):

- ``revocations.snap``: the last full list (or compaction), in :mod:`agent.store.revfile`
  format; ``revocations.snap.prev`` is the previous good one (a hard link, no copy).
- ``revocations.journal``: the net effect of the deltas applied since that snapshot,
  rewritten whole on each delta (small), so a delta never rewrites a million ids.
  It names the snapshot version it applies to; a journal that does not match the
  snapshot is stale (a full list replaced the snapshot) and is ignored.
- ``revocations.json``: TinyDB metadata (installed version, issue time, apply history)
  for people and status; the list files are the truth when the two disagree.

Any kill leaves the (snapshot, journal) pair describing exactly the old or the new
version. A corrupt snapshot is moved aside and the previous good copy is used; with no
good copy the store has no list (``version is None``).

Never an older list silently: the newest version ever installed is a high-water mark
(``highwater=``, kept in meta.json and the entry log database). A list that cannot be
proven at least that new, or no list at all, makes ``state`` ``"unknown"``: the gate
asks the centre for a full list and denies scans with ``revocations_unknown`` until it
has one. Only ``"ok"`` is a list the gate may decide with.

Only the controller thread (in one process: a lock file enforces it) writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.table import Document

from agent.core.clock import Clock, SystemClock
from agent.core.errors import CorruptStateError, RevocationListError, StateError
from agent.protocol.revocation import RevocationList
from agent.store import revfile
from agent.store.atomic_storage import open_tinydb
from agent.store.files import (
    WriterLock,
    atomic_write,
    ensure_dir,
    fsync_dir,
    move_aside,
    remove_stale_temps,
    temp_path,
)
from agent.store.highwater import HighWater
from agent.store.revfile import CtiKey, cti_key, split_keys

log = logging.getLogger(__name__)

SNAPSHOT = "revocations.snap"
PREVIOUS = "revocations.snap.prev"
JOURNAL = "revocations.journal"
META = "revocations.json"
LOCK = "revocations.lock"
HISTORY_KEPT = 50
_ABSENT = object()


@dataclass(frozen=True)
class RevocationStatus:
    """What ``gate-agent revocations status`` and the status topic report."""

    version: int | None
    entries: int
    age_s: float | None  # seconds since the centre issued the installed list
    issued_at: int | None
    applied_at: float | None
    problems: tuple[str, ...] = ()
    state: str = "ok"  # ok | unknown (no list, or not provably the newest the gate had)
    high_water: int | None = None  # the newest version this gate ever installed

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "high_water_version": self.high_water,
            "version": self.version,
            "entries": self.entries,
            "age_s": None if self.age_s is None else round(self.age_s, 3),
            "issued_at": self.issued_at,
            "applied_at": self.applied_at,
            "problems": list(self.problems),
        }


@dataclass
class _Journal:
    """Net changes since the snapshot: True = revoked, False = lifted; subs: before or off."""

    cti: dict[CtiKey, bool]
    sub_set: dict[str, int | None]
    sub_del: set[str]

    @classmethod
    def empty(cls) -> _Journal:
        return cls({}, {}, set())

    def copy(self) -> _Journal:
        return _Journal(dict(self.cti), dict(self.sub_set), set(self.sub_del))

    def size(self) -> int:
        return len(self.cti) + len(self.sub_set) + len(self.sub_del)


class RevocationStore:
    """Revocation lists, installed with the version rules of the protocol.

    ``is_revoked`` is the scan-path lookup (a set and a dict; never a TinyDB query).
    ``apply`` refuses an older-or-equal list or a delta that does not follow the
    installed version, and changes nothing when it refuses or fails.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        clock: Clock | None = None,
        read_only: bool = False,
        journal_limit: int = 200_000,
        highwater: HighWater | None = None,
        min_version: int | None = None,
    ) -> None:
        """``highwater``: the daemon's marks (raised on every install); ``min_version``:
        a mark read elsewhere (status commands), for ``state`` without writing."""
        self._dir = Path(state_dir)
        self._hw = highwater
        mark = highwater.get("revocations_version") if highwater is not None else None
        self._min_version = int(mark) if mark is not None else min_version
        self._clock = clock or SystemClock()
        self._read_only = read_only
        self._journal_limit = journal_limit
        self._problems: list[str] = []
        self._lock: WriterLock | None = None
        self._meta: TinyDB | None = None
        self._ctis: set[CtiKey] = set()
        self._subs: dict[str, int | None] = {}
        self._journal = _Journal.empty()
        self._snapshot_version: int | None = None
        self.version: int | None = None
        self.issued_at: int | None = None
        self.applied_at: float | None = None
        if not read_only:
            ensure_dir(self._dir)
            self._lock = WriterLock(self._dir / LOCK, "the revocation list")
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # ---- the scan path -------------------------------------------------------------

    def is_revoked(self, cti: str, sub: str, iat: int) -> bool:
        """True if this credential id is revoked, or its courier's credentials issued
        before ``iat`` are (a courier entry without a time revokes all of them)."""
        try:  # cti_key() inlined: this is the hot path
            key: CtiKey = bytes.fromhex(cti) if cti else cti
        except ValueError:
            key = cti
        if key in self._ctis:
            return True
        subs = self._subs
        if sub not in subs:
            return False
        before = subs[sub]
        return before is None or iat < before

    @property
    def entries(self) -> int:
        return len(self._ctis) + len(self._subs)

    @property
    def state(self) -> str:
        """``ok`` only for a list at least as new as the newest the gate ever had."""
        if self.version is None:
            return "unknown"
        if self._min_version is not None and self.version < self._min_version:
            return "unknown"
        return "ok"

    @property
    def high_water(self) -> int | None:
        return self._min_version

    def use_highwater(self, highwater: HighWater) -> None:
        """Keep the marks from now on (``revocations apply`` opens them after the lock)."""
        self._hw = highwater
        mark = highwater.get("revocations_version")
        if mark is not None and (self._min_version is None or mark > self._min_version):
            self._min_version = int(mark)

    # ---- installing lists ----------------------------------------------------------

    def apply(self, lst: RevocationList) -> None:
        """Install a verified list: atomic on disk and in memory, or refused unchanged."""
        if self._read_only:
            raise StateError("the revocation store was opened read-only")
        if lst.kind == "full":
            self._check_full(lst)
            self._apply_full(lst)
        elif lst.kind == "delta":
            self._check_delta(lst)
            self._apply_delta(lst)
        else:
            raise RevocationListError(f"unknown revocation list kind {lst.kind!r}: refused")
        log.info(
            "installed revocation list version %s (%s), %s entries", lst.version, lst.kind,
            self.entries,
        )
        self._record_meta(lst)
        self._raise_mark(lst)

    def _raise_mark(self, lst: RevocationList) -> None:
        if self._min_version is None or lst.version > self._min_version:
            self._min_version = lst.version
        if self._hw is None:
            return
        self._hw.raise_to(revocations_version=lst.version)
        if lst.kind == "full" and self.state == "ok":  # a fresh full list clears the report
            self._hw.clear("revocations")
            self._problems.clear()

    def _check_full(self, lst: RevocationList) -> None:
        if self.version is not None and lst.version <= self.version:
            raise RevocationListError(
                f"list version {lst.version} is older than or equal to the installed "
                f"version {self.version}: refused (nothing changed)"
            )
        if lst.remove:
            raise RevocationListError("a full list must not remove entries: refused")

    def _check_delta(self, lst: RevocationList) -> None:
        if self.version is None:
            raise RevocationListError(
                f"no list installed, delta needs base {lst.base}: "
                "wait for or request a full list",
                gap=True,
            )
        if lst.version <= self.version:
            raise RevocationListError(
                f"delta to version {lst.version} is older than or equal to the installed "
                f"version {self.version}: refused (nothing changed)"
            )
        if lst.base != self.version:
            raise RevocationListError(
                f"installed version {self.version}, delta needs base {lst.base}: "
                "wait for or request a full list",
                gap=True,
            )

    def _apply_full(self, lst: RevocationList) -> None:
        ctis: set[CtiKey] = set()
        subs: dict[str, int | None] = {}
        for entry in lst.add:
            if entry.kind == "cti":
                ctis.add(cti_key(entry.value))
            else:
                subs[entry.value] = _stricter(subs.get(entry.value, _ABSENT), entry.before)
        applied_at = self._clock.now()
        self._install_snapshot(lst.version, lst.issued_at, applied_at, ctis, subs)
        self._ctis, self._subs = ctis, subs
        self._journal = _Journal.empty()
        self._snapshot_version = lst.version
        self._set_version(lst.version, lst.issued_at, applied_at)

    def _apply_delta(self, lst: RevocationList) -> None:
        journal = self._journal.copy()
        lifted = [e for e in lst.remove if e.kind == "cti"]
        added = [e for e in lst.add if e.kind == "cti"]
        off_keys = [cti_key(e.value) for e in lifted]
        on_keys = [cti_key(e.value) for e in added]
        for key in off_keys:
            journal.cti[key] = False
        for key in on_keys:
            journal.cti[key] = True
        sub_changes: dict[str, Any] = {}
        for entry in lst.remove:
            if entry.kind == "sub":
                sub_changes[entry.value] = _ABSENT
        for entry in lst.add:  # two entries for one courier: the stricter, as in a full list
            if entry.kind == "sub":
                sub_changes[entry.value] = _stricter(
                    sub_changes.get(entry.value, _ABSENT), entry.before
                )
        for sub, before in sub_changes.items():
            if before is _ABSENT:
                journal.sub_set.pop(sub, None)
                journal.sub_del.add(sub)
            else:
                journal.sub_del.discard(sub)
                journal.sub_set[sub] = before
        applied_at = self._clock.now()
        atomic_write(
            self._dir / JOURNAL,
            _encode_journal(journal, self._snapshot_version, lst.version, lst.issued_at,
                            applied_at),
        )
        # Durable: now mirror the same change in memory (removals first, as in the file).
        self._ctis.difference_update(off_keys)
        self._ctis.update(on_keys)
        for sub, before in sub_changes.items():
            if before is _ABSENT:
                self._subs.pop(sub, None)
            else:
                self._subs[sub] = before
        self._journal = journal
        self._set_version(lst.version, lst.issued_at, applied_at)
        if journal.size() > self._journal_limit:
            self.compact()

    @property
    def compaction_due(self) -> bool:
        """The delta journal is past half its limit: call ``compact()`` when the gate is idle
        (a delta that finds it full compacts itself, ~0.6 s at 1M entries)."""
        return self._journal.size() > self._journal_limit // 2

    def compact(self) -> None:
        """Fold the delta journal into a new snapshot (~0.5 s at 1M entries; call when idle)."""
        if self._read_only or self.version is None or self.version == self._snapshot_version:
            return
        assert self.issued_at is not None and self.applied_at is not None
        self._install_snapshot(self.version, self.issued_at, self.applied_at, self._ctis,
                               self._subs)
        self._journal = _Journal.empty()
        self._snapshot_version = self.version
        log.info("compacted revocation deltas into a snapshot of version %s", self.version)

    def _install_snapshot(
        self,
        version: int,
        issued_at: int,
        applied_at: float,
        ctis: Iterable[CtiKey],
        subs: dict[str, int | None],
    ) -> None:
        by_width, texts = split_keys(ctis)
        data = revfile.encode(
            {"kind": "snapshot", "version": version, "issued_at": issued_at,
             "applied_at": applied_at, "cti_text": texts, "subs": subs},
            {"cti": by_width},
        )
        snap, prev = self._dir / SNAPSHOT, self._dir / PREVIOUS
        try:
            if snap.exists():  # keep the current list as the last good copy (hard link)
                prev_tmp = temp_path(prev)
                with contextlib.suppress(FileNotFoundError):
                    prev_tmp.unlink()
                os.link(snap, prev_tmp)
                os.replace(prev_tmp, prev)
        except OSError as exc:
            raise StateError(f"cannot keep a copy of {snap}: {exc.strerror or exc}") from exc
        atomic_write(snap, data)
        try:  # the journal now names an older snapshot: stale either way, remove it
            (self._dir / JOURNAL).unlink(missing_ok=True)
            fsync_dir(self._dir)
        except OSError as exc:
            log.warning("could not remove the stale revocation journal: %s", exc)

    def _set_version(self, version: int, issued_at: int, applied_at: float) -> None:
        self.version, self.issued_at, self.applied_at = version, issued_at, applied_at

    # ---- status and lifecycle ------------------------------------------------------

    def status(self, now: float | None = None) -> RevocationStatus:
        at = self._clock.now() if now is None else now
        age = None if self.issued_at is None else max(0.0, at - self.issued_at)
        return RevocationStatus(
            self.version, self.entries, age, self.issued_at, self.applied_at,
            tuple(self._problems), self.state, self._min_version,
        )

    def problems(self) -> list[str]:
        """Corruption found and recovered from since start (for status and alarms)."""
        return list(self._problems)

    def history(self) -> list[dict[str, Any]]:
        """The last applies (version, kind, applied_at, entries), oldest first."""
        if self._meta is None:
            return []
        doc = self._meta.table("list").get(doc_id=1)
        return list(doc.get("history", [])) if isinstance(doc, dict) else []

    def close(self) -> None:
        if self._meta is not None:
            self._meta.close()
            self._meta = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> RevocationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- loading -------------------------------------------------------------------

    def _problem(self, message: str) -> None:
        log.error("%s", message)
        self._problems.append(message)
        if self._hw is not None:
            self._hw.record("revocations", message)

    def _load(self) -> None:
        if not self._read_only:
            for name in (SNAPSHOT, PREVIOUS, JOURNAL):
                remove_stale_temps(self._dir / name)
        snapshot = self._load_snapshot()
        if snapshot is not None:
            self._load_journal()
        if not self._read_only:
            self._meta = open_tinydb(self._dir / META, self._clock.now(), self._problems)
            self._sync_meta()
        if self.state == "ok" and self._hw is not None:  # e.g. a list a bundle installed
            self._hw.raise_to(revocations_version=self.version)
            self._min_version = self.version
        if self.state == "unknown" and self._min_version is not None:
            have = "no list" if self.version is None else f"version {self.version}"
            self._problem(
                f"the revocation list on disk ({have}) is older than version "
                f"{self._min_version}, which this gate had installed: a downgraded or lost "
                "list; scans are denied (revocations_unknown) until the centre's full list "
                "arrives (requested)"
            )

    def _read(self, name: str) -> tuple[dict[str, Any], dict[str, list[bytes]]] | None:
        """A list file, verified; None if absent; a corrupt one is moved aside."""
        path = self._dir / name
        try:
            return revfile.decode(path.read_bytes(), path)
        except FileNotFoundError:
            return None
        except (OSError, CorruptStateError) as exc:
            if self._read_only:
                self._problem(f"{exc}")
            else:
                aside = move_aside(path, self._clock.now())
                self._problem(f"{exc}; moved to {aside.name}")
            return None

    def _load_snapshot(self) -> dict[str, Any] | None:
        current = self._read(SNAPSHOT)
        found, used = current, SNAPSHOT
        if current is None:
            found, used = self._read(PREVIOUS), PREVIOUS
        if found is None:
            if self._problems:
                self._problem("no good revocation list left: waiting for a full list")
            return None
        header, blobs = found
        try:
            version = _int(header["version"])
            issued_at = _int(header["issued_at"])
            applied_at = float(header["applied_at"])
            subs = {str(k): (None if v is None else _int(v)) for k, v in header["subs"].items()}
            ctis: set[CtiKey] = set(blobs.get("cti", []))
            ctis.update(str(t) for t in header["cti_text"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self._problem(f"{self._dir / used} has a bad header ({exc}): ignored")
            return None
        if used == PREVIOUS:
            self._problem(f"using the last good revocation list copy, version {version}")
            if not self._read_only:
                atomic_write(self._dir / SNAPSHOT, (self._dir / PREVIOUS).read_bytes())
        self._ctis, self._subs = ctis, subs
        self._snapshot_version = version
        self._set_version(version, issued_at, applied_at)
        return header

    def _load_journal(self) -> None:
        found = self._read(JOURNAL)
        if found is None:
            return
        header, blobs = found
        path = self._dir / JOURNAL
        try:
            if header.get("snapshot_version") != self._snapshot_version:
                log.info("ignoring a revocation journal for an older snapshot")
                if not self._read_only:
                    path.unlink(missing_ok=True)
                return
            journal = _Journal.empty()
            for key in blobs.get("cti_off", []):
                journal.cti[key] = False
            for key in blobs.get("cti_on", []):
                journal.cti[key] = True
            for text in header["cti_off_text"]:
                journal.cti[str(text)] = False
            for text in header["cti_on_text"]:
                journal.cti[str(text)] = True
            journal.sub_set = {
                str(k): (None if v is None else _int(v)) for k, v in header["sub_set"].items()
            }
            journal.sub_del = {str(s) for s in header["sub_del"]}
            version, issued_at = _int(header["version"]), _int(header["issued_at"])
            applied_at = float(header["applied_at"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self._problem(f"{path} has a bad header ({exc}): deltas since the snapshot ignored")
            return
        for changed, on in journal.cti.items():
            if on:
                self._ctis.add(changed)
            else:
                self._ctis.discard(changed)
        for sub in journal.sub_del:
            self._subs.pop(sub, None)
        self._subs.update(journal.sub_set)
        self._journal = journal
        self._set_version(version, issued_at, applied_at)

    # ---- TinyDB metadata -----------------------------------------------------------

    def _installed(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "issued_at": self.issued_at,
            "applied_at": self.applied_at,
            "entries": self.entries,
        }

    def _sync_meta(self) -> None:
        """Make the metadata agree with the list files (they win after a crash)."""
        assert self._meta is not None
        doc = self._meta.table("list").get(doc_id=1)
        stored = doc.get("installed") if isinstance(doc, dict) else None
        if stored != self._installed():
            history = list(doc.get("history", [])) if isinstance(doc, dict) else []
            self._write_meta(history)

    def _record_meta(self, lst: RevocationList) -> None:
        history = self.history()
        history.append(
            {"version": lst.version, "kind": lst.kind, "applied_at": self.applied_at,
             "entries": self.entries, "added": len(lst.add), "removed": len(lst.remove)}
        )
        try:
            self._write_meta(history[-HISTORY_KEPT:])
        except StateError as exc:  # the list itself is installed; metadata is advisory
            self._problem(f"revocation metadata not updated: {exc}")

    def _write_meta(self, history: list[dict[str, Any]]) -> None:
        assert self._meta is not None
        self._meta.table("list").upsert(
            Document({"installed": self._installed(), "history": history}, doc_id=1)
        )


def _encode_journal(
    journal: _Journal, snapshot_version: int | None, version: int, issued_at: int,
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


def _stricter(current: object, new: int | None) -> int | None:
    """Two entries for one courier: keep the one that revokes more (a removal earlier in
    the same delta counts as absent)."""
    if current is _ABSENT:
        return new
    if current is None or new is None:
        return None
    assert isinstance(current, int)
    return max(current, new)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value

