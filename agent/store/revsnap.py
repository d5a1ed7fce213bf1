"""The revocation cache's files: snapshot table, its previous copy, the delta journal.

Every write is atomic (temp, fsync, rename, folder fsync); a file that fails its checks
is moved aside and reported through ``problem``. Only :mod:`agent.store.revocations`
uses this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.core.clock import Clock
from agent.core.errors import CorruptStateError, StateError
from agent.store import revfile
from agent.store.files import atomic_write, fsync_dir, move_aside, remove_stale_temps, temp_path
from agent.store.revjournal import as_int
from agent.store.revtable import IdColumns, RevTable, id_columns, table_parts, write_table

log = logging.getLogger(__name__)

SNAPSHOT = "revocations.snap"
PREVIOUS = "revocations.snap.prev"
JOURNAL = "revocations.journal"


class ListFiles:
    """Reads and writes the list files of one state folder."""

    def __init__(self, folder: Path, clock: Clock, read_only: bool,
                 problem: Callable[[str], None]) -> None:
        self.dir, self._clock, self._read_only, self._problem = folder, clock, read_only, problem

    def remove_stale_temps(self) -> None:
        for name in (SNAPSHOT, PREVIOUS, JOURNAL):
            remove_stale_temps(self.dir / name)

    def corrupt(self, path: Path, exc: Exception) -> None:
        if self._read_only:
            self._problem(f"{exc}")
        else:
            aside = move_aside(path, self._clock.now())
            self._problem(f"{exc}; moved to {aside.name}")

    def read_table(self, name: str) -> RevTable | None:
        """A snapshot file, verified and mapped; None if absent; a corrupt one moved aside."""
        path = self.dir / name
        try:
            with open(path, "rb") as handle:
                legacy = handle.read(len(revfile.MAGIC)) == revfile.MAGIC
            if not legacy:
                return RevTable.open(path)
            return self._convert(path, *revfile.decode(path.read_bytes(), path))
        except FileNotFoundError:
            return None
        except (OSError, CorruptStateError) as exc:
            self.corrupt(path, exc)
            return None

    def _convert(self, path: Path, header: dict[str, Any],
                 blobs: dict[str, list[bytes]]) -> RevTable:
        """A snapshot of the older format as a table (rewritten in place when writable)."""
        try:
            by_width: dict[int, bytearray] = {}
            for key in blobs.get("cti", []):
                by_width.setdefault(len(key), bytearray()).extend(key)
            ids = {w: id_columns(w, buf) for w, buf in by_width.items()}
            subs = {str(k): (None if v is None else as_int(v))
                    for k, v in header["subs"].items()}
            meta = {k: header[k] for k in ("kind", "version", "issued_at", "applied_at")}
            texts = {str(t) for t in header["cti_text"]}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptStateError(f"{path} has a bad header ({exc})") from exc
        if self._read_only:
            return RevTable(b"".join(table_parts(meta, ids, subs, texts)), path)
        write_table(path, meta, ids, subs, texts)
        log.info("rewrote %s as a sorted revocation table", path.name)
        return RevTable.open(path)

    def restore_previous(self) -> None:
        """The previous copy becomes the snapshot again (the current one was bad)."""
        if not self._read_only:
            atomic_write(self.dir / SNAPSHOT, (self.dir / PREVIOUS).read_bytes())

    def write_snapshot(
        self, meta: dict[str, Any], ids: dict[int, IdColumns], subs: dict[str, int | None],
        texts: set[str],
    ) -> RevTable:
        """Keep the current snapshot as the previous copy, write the new one, drop the
        journal (it names the older snapshot), and map the new table."""
        snap, prev = self.dir / SNAPSHOT, self.dir / PREVIOUS
        try:
            if snap.exists():  # keep the current list as the last good copy (hard link)
                prev_tmp = temp_path(prev)
                with contextlib.suppress(FileNotFoundError):
                    prev_tmp.unlink()
                os.link(snap, prev_tmp)
                os.replace(prev_tmp, prev)
        except OSError as exc:
            raise StateError(f"cannot keep a copy of {snap}: {exc.strerror or exc}") from exc
        write_table(snap, meta, ids, subs, texts)
        ids.clear()  # the columns are on disk: map them instead of keeping a copy
        try:  # the journal now names an older snapshot: stale either way, remove it
            (self.dir / JOURNAL).unlink(missing_ok=True)
            fsync_dir(self.dir)
        except OSError as exc:
            log.warning("could not remove the stale revocation journal: %s", exc)
        try:
            return RevTable.open(snap, verify=False)
        except (OSError, CorruptStateError) as exc:
            raise StateError(f"cannot map {snap} just written: {exc}") from exc

    def read_journal(self) -> tuple[dict[str, Any], dict[str, list[bytes]]] | None:
        path = self.dir / JOURNAL
        try:
            return revfile.decode(path.read_bytes(), path)
        except FileNotFoundError:
            return None
        except (OSError, CorruptStateError) as exc:
            self.corrupt(path, exc)
            return None

    def write_journal(self, data: bytes) -> None:
        atomic_write(self.dir / JOURNAL, data)

    def drop_journal(self) -> None:
        if not self._read_only:
            (self.dir / JOURNAL).unlink(missing_ok=True)
