"""The gate's revocation cache: a memory-mapped sorted table, crash-safe files on disk.

On disk (``[state] dir``), all replaced atomically (temp + fsync + rename + dir fsync):

- ``revocations.snap``: the last full list (or compaction), a sorted table in
  :mod:`agent.store.revtable` format (16 bytes an id, mapped, not loaded);
  ``revocations.snap.prev`` is the previous good one (a hard link, no copy). A snapshot
  in the older :mod:`agent.store.revfile` format is read and rewritten as a table.
- ``revocations.journal``: the net effect of the deltas applied since that snapshot
  (:mod:`agent.store.revjournal`), rewritten whole on each delta (small), so a delta
  never rewrites a million ids; lookups check it before the table.
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

import logging
from pathlib import Path
from typing import Any

from agent.core.clock import Clock, SystemClock
from agent.core.errors import RevocationListError, StateError
from agent.protocol.revocation import RevocationList
from agent.protocol.revstream import CompactList, compact_from_list
from agent.store.files import WriterLock, ensure_dir
from agent.store.highwater import HighWater
from agent.store.revfile import CtiKey
from agent.store.revjournal import (
    Journal,
    as_int,
    decode_journal,
    encode_journal,
    folded,
    present,
    sub_present,
)
from agent.store.revmeta import HISTORY_KEPT, ListMeta, RevocationStatus
from agent.store.revrules import check_delta, check_full
from agent.store.revsnap import JOURNAL, PREVIOUS, SNAPSHOT, ListFiles
from agent.store.revtable import ABSENT, IdColumns, RevTable, id_columns

__all__ = ["HISTORY_KEPT", "JOURNAL", "LOCK", "PREVIOUS", "SNAPSHOT", "RevocationStatus",
           "RevocationStore"]

log = logging.getLogger(__name__)

META = "revocations.json"
LOCK = "revocations.lock"


class RevocationStore:
    """Revocation lists, installed with the version rules of the protocol.

    ``is_revoked`` is the scan-path lookup (the journal's dicts, then a bisect of the
    mapped table; never a TinyDB query). ``apply`` refuses an older-or-equal list or a
    delta that does not follow the installed version, and changes nothing when it
    refuses or fails.
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
        self._files = ListFiles(self._dir, self._clock, read_only, self._problem)
        self._lock: WriterLock | None = None
        self._meta: ListMeta | None = None
        self._table = RevTable.empty()
        self._journal = Journal.empty()
        self._net = 0  # entries the journal adds (or, negative, lifts) over the table
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
        journal = self._journal
        on = journal.cti.get(key) if journal.cti else None
        if on is None:
            table = self._table
            if table.has_id(key) if type(key) is bytes else key in table.texts:
                return True
        elif on:
            return True
        if sub in journal.sub_set:
            before: object = journal.sub_set[sub]
        elif sub in journal.sub_del:
            return False
        else:
            before = self._table.sub_before(sub)
            if before is ABSENT:
                return False
        return before is None or iat < before  # type: ignore[operator]

    @property
    def entries(self) -> int:
        return self._table.count + self._net

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

    def apply(self, lst: RevocationList | CompactList) -> None:
        """Install a verified list: atomic on disk and in memory, or refused unchanged.

        A ``CompactList`` (agent.protocol.revstream) is the gate's path for big lists;
        a ``RevocationList`` is turned into one first."""
        if self._read_only:
            raise StateError("the revocation store was opened read-only")
        if lst.kind not in ("full", "delta"):
            raise RevocationListError(f"unknown revocation list kind {lst.kind!r}: refused")
        compact = lst if isinstance(lst, CompactList) else compact_from_list(lst)
        if compact.kind == "full":
            check_full(self.version, compact)
            self._apply_full(compact)
        else:
            check_delta(self.version, compact)
            self._apply_delta(compact)
        log.info(
            "installed revocation list version %s (%s), %s entries", lst.version, lst.kind,
            self.entries,
        )
        self._record_meta(compact)
        self._raise_mark(compact)

    def _raise_mark(self, lst: CompactList) -> None:
        if self._min_version is None or lst.version > self._min_version:
            self._min_version = lst.version
        if self._hw is None:
            return
        self._hw.raise_to(revocations_version=lst.version)
        if lst.kind == "full" and self.state == "ok":  # a fresh full list clears the report
            self._hw.clear("revocations")
            self._problems.clear()

    def _apply_full(self, lst: CompactList) -> None:
        ids = {w: id_columns(w, buf) for w, buf in lst.add.ctis.items() if buf}
        applied_at = self._clock.now()
        self._install_snapshot(lst.version, lst.issued_at, applied_at, ids, lst.add.subs,
                               lst.add.texts)
        self._set_version(lst.version, lst.issued_at, applied_at)

    def _apply_delta(self, lst: CompactList) -> None:
        journal, table, net = self._journal.copy(), self._table, self._net
        changes: dict[CtiKey, bool] = {}
        for off in lst.remove.cti_keys():
            changes[off] = False
        changes.update(dict.fromkeys(lst.remove.texts, False))
        for new in lst.add.cti_keys():  # an id both lifted and added stays revoked
            changes[new] = True
        changes.update(dict.fromkeys(lst.add.texts, True))
        for key, on in changes.items():
            net += on - present(table, journal, key)
            journal.cti[key] = on
        sub_changes: dict[str, object] = dict.fromkeys(lst.remove.subs, ABSENT)
        sub_changes.update(lst.add.subs)  # already the stricter of repeats
        for sub, before in sub_changes.items():
            net -= sub_present(table, journal, sub)
            if before is ABSENT:
                journal.sub_set.pop(sub, None)
                journal.sub_del.add(sub)
            else:
                journal.sub_del.discard(sub)
                journal.sub_set[sub] = before  # type: ignore[assignment]
                net += 1
        applied_at = self._clock.now()
        self._files.write_journal(
            encode_journal(journal, self._snapshot_version, lst.version, lst.issued_at,
                           applied_at)
        )
        self._journal, self._net = journal, net  # durable: now in memory too
        self._set_version(lst.version, lst.issued_at, applied_at)
        if journal.size() > self._journal_limit:
            self.compact()

    @property
    def compaction_due(self) -> bool:
        """The delta journal is past half its limit: call ``compact()`` when the gate is idle
        (a delta that finds it full compacts itself)."""
        return self._journal.size() > self._journal_limit // 2

    def compact(self) -> None:
        """Fold the delta journal into a new snapshot (call when idle)."""
        if self._read_only or self.version is None or self.version == self._snapshot_version:
            return
        assert self.issued_at is not None and self.applied_at is not None
        ids, subs, texts = folded(self._table, self._journal)
        self._install_snapshot(self.version, self.issued_at, self.applied_at, ids, subs, texts)
        log.info("compacted revocation deltas into a snapshot of version %s", self.version)

    def _install_snapshot(
        self, version: int, issued_at: int, applied_at: float, ids: dict[int, IdColumns],
        subs: dict[str, int | None], texts: set[str],
    ) -> None:
        meta = {"kind": "snapshot", "version": version, "issued_at": issued_at,
                "applied_at": applied_at}
        table = self._files.write_snapshot(meta, ids, subs, texts)
        old, self._table = self._table, table
        old.close()
        self._journal, self._net = Journal.empty(), 0
        self._snapshot_version = version

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
        return [] if self._meta is None else self._meta.history()

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
            self._files.remove_stale_temps()
        if self._load_snapshot():
            self._load_journal()
        if not self._read_only:
            self._meta = ListMeta(self._dir / META, self._clock.now(), self._problems)
            self._meta.sync(self._installed())
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

    def _load_snapshot(self) -> bool:
        table, used = self._files.read_table(SNAPSHOT), SNAPSHOT
        if table is None:
            table, used = self._files.read_table(PREVIOUS), PREVIOUS
        if table is None:
            if self._problems:
                self._problem("no good revocation list left: waiting for a full list")
            return False
        header = table.header
        try:
            version = as_int(header["version"])
            issued_at = as_int(header["issued_at"])
            applied_at = float(header["applied_at"])
        except (KeyError, TypeError, ValueError) as exc:
            table.close()
            self._problem(f"{self._dir / used} has a bad header ({exc}): ignored")
            return False
        if used == PREVIOUS:
            self._problem(f"using the last good revocation list copy, version {version}")
            self._files.restore_previous()
        self._table = table
        self._snapshot_version = version
        self._set_version(version, issued_at, applied_at)
        return True

    def _load_journal(self) -> None:
        found = self._files.read_journal()
        if found is None:
            return
        header, blobs = found
        path = self._dir / JOURNAL
        try:
            if header.get("snapshot_version") != self._snapshot_version:
                log.info("ignoring a revocation journal for an older snapshot")
                self._files.drop_journal()
                return
            journal = decode_journal(header, blobs)
            version, issued_at = as_int(header["version"]), as_int(header["issued_at"])
            applied_at = float(header["applied_at"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self._problem(f"{path} has a bad header ({exc}): deltas since the snapshot ignored")
            return
        empty, table = Journal.empty(), self._table
        net = sum(on - present(table, empty, key) for key, on in journal.cti.items())
        net += sum(not sub_present(table, empty, s) for s in journal.sub_set)
        net -= sum(sub_present(table, empty, s) for s in journal.sub_del)
        self._journal, self._net = journal, net
        self._set_version(version, issued_at, applied_at)

    # ---- TinyDB metadata -----------------------------------------------------------

    def _installed(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "issued_at": self.issued_at,
            "applied_at": self.applied_at,
            "entries": self.entries,
        }

    def _record_meta(self, lst: CompactList) -> None:
        assert self._meta is not None
        entry = {"version": lst.version, "kind": lst.kind, "applied_at": self.applied_at,
                 "entries": self.entries, "added": len(lst.add), "removed": len(lst.remove)}
        try:
            self._meta.record(self._installed(), entry)
        except StateError as exc:  # the list itself is installed; metadata is advisory
            self._problem(f"revocation metadata not updated: {exc}")
