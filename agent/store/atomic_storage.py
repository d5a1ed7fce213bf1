"""A TinyDB storage that survives power cuts, and the one way this project opens TinyDB.

TinyDB's default JSONStorage rewrites its file in place: SIGKILL at random moments
corrupted it within ~35 kills, and an empty file opened silently as an EMPTY database
(a revocation list that vanishes lets revoked couriers in). This storage writes a temp
file, fsyncs it, renames it over the old one and fsyncs the folder; a file that is empty
or does not parse is corruption (``CorruptStateError``), never empty state.

Every file carries its format version and a SHA-256 of its tables under the reserved
top-level key ``_integrity`` (``{"format": 1, "sha256": hex}``), so a file that parses
but was edited or half-restored fails its checksum. A file without that key (written
before the key existed) is read once and gets it on its next write.

TinyDB is not thread-safe: only the controller thread writes these files.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage

from agent.core.errors import CorruptStateError, StateError
from agent.store.files import atomic_write, move_aside, remove_stale_temps

log = logging.getLogger(__name__)

INTEGRITY_KEY = "_integrity"
FORMAT = 1


def _digest(tables: dict[str, Any]) -> str:
    canonical = json.dumps(tables, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _verified(data: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """The tables of a parsed file once its format and checksum are right."""
    tables = dict(data)
    seal = tables.pop(INTEGRITY_KEY, None)
    if seal is None:
        return tables  # an older file: it gets its checksum on the next write
    if seal.get("format") != FORMAT:
        raise CorruptStateError(
            f"{path} has format {seal.get('format')!r}, this agent reads format {FORMAT} "
            "(written by a newer agent? upgrade gate-agent)"
        )
    if seal.get("sha256") != _digest(tables):
        raise CorruptStateError(f"{path} fails its checksum (edited or partly restored)")
    return tables


def _check_shape(data: Any, path: Path) -> dict[str, dict[str, Any]]:
    if not isinstance(data, dict) or not all(
        isinstance(table, dict) for table in data.values()
    ):
        raise CorruptStateError(f"{path} is not a TinyDB file (expected an object of tables)")
    return data


class AtomicJSONStorage(Storage):
    """TinyDB storage: atomic replace on write, strict parse on open.

    The file is read and validated once when the storage is created (so corruption is
    found at start-up, not in the middle of a scan) and kept in memory as text: TinyDB
    reads its storage on every query, and this file has a single writer.
    """

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.read_only = read_only
        self._text: str | None = None
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CorruptStateError(f"{self.path} cannot be read: {exc.strerror or exc}") from exc
        if not raw.strip():
            raise CorruptStateError(f"{self.path} is empty (a torn write or a manual edit)")
        try:
            text = raw.decode("utf-8")
            tables = _verified(_check_shape(json.loads(text), self.path), self.path)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptStateError(f"{self.path} is not valid JSON: {exc}") from exc
        self._text = json.dumps(tables, separators=(",", ":"), ensure_ascii=False)

    def read(self) -> dict[str, dict[str, Any]] | None:
        if self._text is None:
            return None
        return _check_shape(json.loads(self._text), self.path)

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        if self.read_only:
            raise StateError(f"{self.path} was opened read-only; only the daemon writes it")
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        sealed = {INTEGRITY_KEY: {"format": FORMAT, "sha256": _digest(data)}, **data}
        atomic_write(self.path, json.dumps(sealed, separators=(",", ":"),
                                           ensure_ascii=False).encode("utf-8"))
        self._text = text


def open_tinydb(path: Path, now: float, problems: list[str]) -> TinyDB:
    """Open a TinyDB file through :class:`AtomicJSONStorage`, recovering from corruption.

    A corrupt file is moved aside with a timestamp, the event is logged and appended to
    ``problems`` (for status output), and an empty database is returned: the caller
    decides what an empty database means for its concern.
    """
    remove_stale_temps(path)
    try:
        return TinyDB(path, storage=AtomicJSONStorage)
    except CorruptStateError as exc:
        aside = move_aside(path, now)
        problems.append(f"{exc}; moved to {aside.name} and started empty")
        return TinyDB(path, storage=AtomicJSONStorage)


def open_tinydb_read_only(path: Path) -> TinyDB:
    """Open a TinyDB file for reading only (CLI status); corruption raises."""
    return TinyDB(path, storage=AtomicJSONStorage, read_only=True)
