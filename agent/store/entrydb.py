"""The entry log's SQLite file: its schema, opening it safely, its checkpoints, its disk floor.

A writer opens it in WAL mode with ``synchronous=FULL`` after ``PRAGMA quick_check``,
writes one row and fsyncs the folder so the WAL file's name is durable before the first
entry is trusted to it. A file that is not a database or fails the check is moved aside
(with its ``-wal``/``-shm``) and a fresh one made; "locked", "busy" or an I/O error is
never taken for corruption. A reader opens it read-only, immutable when no WAL is live.
Only :mod:`agent.store.entrylog` opens the file.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
from pathlib import Path

from agent.core.clock import Clock
from agent.core.errors import StateError
from agent.core.timefmt import format_instant
from agent.store.files import fsync_dir, move_aside

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    ts REAL NOT NULL,
    event TEXT NOT NULL,
    acked_at REAL
);
CREATE INDEX IF NOT EXISTS entries_pending ON entries(seq) WHERE acked_at IS NULL;
CREATE INDEX IF NOT EXISTS entries_ts ON entries(ts);
CREATE TABLE IF NOT EXISTS info (k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS replays (k TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS replays_until ON replays(until);
PRAGMA user_version = 2;
"""
# The writer's automatic checkpoint, a backstop only (40 MB of WAL at 4 KiB pages): the
# daemon checkpoints from its supervisor loop (Checkpointer).
AUTOCHECKPOINT_PAGES = 10_000
SCHEMA_VERSION = 2
ROOM_CHECK_EVERY_S = 1.0  # free disk asked at most this often while above the floor


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A reader's connection; StateError when the file is not a readable entry log."""
    # With no WAL file the log was closed cleanly: open it immutable so a reader
    # (perhaps root) creates no -wal/-shm files the daemon's user could not open.
    live = path.with_name(path.name + "-wal").exists()
    query = "?mode=ro" if live else "?immutable=1"
    try:
        conn = sqlite3.connect(
            path.resolve().as_uri() + query, uri=True, isolation_level=None,
            check_same_thread=False, timeout=5.0,
        )
        conn.execute("SELECT count(*) FROM entries WHERE 0").fetchone()
    except sqlite3.Error as exc:
        raise StateError(f"cannot read the entry log {path}: {exc}") from exc
    return conn


def open_or_recover(path: Path, clock: Clock) -> tuple[sqlite3.Connection, str | None]:
    """The writer's connection, and why the file was replaced (None when it was not).

    A corrupt file is moved aside and a new one made; any other failure is a StateError
    saying what to check."""
    try:
        return _connect(path, clock), None
    except sqlite3.DatabaseError as exc:
        if not _is_corruption(exc):
            raise StateError(
                f"cannot open the entry log {path}: {exc}: check the disk and the "
                "permissions of [state] dir"
            ) from exc
        now = clock.now()
        aside = move_aside(path, now)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                move_aside(side, now)
        replaced = f"entry log {path} was unreadable ({exc}); moved to {aside.name}"
        log.error("%s", replaced)
    return _connect(path, clock), replaced


def _connect(path: Path, clock: Clock) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StateError(f"{path}: SQLite cannot use WAL here (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        # Checkpoints belong to the Checkpointer, off the scan path; this is a backstop.
        conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise _Corrupt(f"integrity check failed: {check}")
        conn.executescript(_SCHEMA)
        # A write now creates the WAL file; fsyncing the folder makes its name
        # durable before the first entry is trusted to it.
        conn.execute(
            "INSERT OR REPLACE INTO info(k, v) VALUES ('opened_at', ?)",
            (format_instant(clock.now()),),
        )
    except BaseException:
        conn.close()
        raise
    fsync_dir(path.parent)
    return conn


class Checkpointer:
    """Copies the WAL back into the database from a connection of its own.

    SQLite's automatic checkpoint runs inside the commit that crosses its threshold: with
    the default of 1,000 pages that was every ~150 scans, the scan's own commit then also
    writing ~4 MB into the database file and fsyncing it (hundreds of ms on an SD card)
    before the door could open. The writer's threshold is raised to a backstop and the
    daemon calls :meth:`run` from its supervisor loop instead: a PASSIVE checkpoint takes
    none of the entry log's locks and never blocks an append (SQLite lets writers go on
    appending to the WAL while it copies).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def run(self) -> int:
        """One PASSIVE checkpoint; the WAL frames it could not copy yet (a reader holds
        them, or a write came in meanwhile; the next run takes them)."""
        with self._lock:
            if self._conn is None:
                self._conn = sqlite3.connect(self._path, isolation_level=None,
                                             check_same_thread=False, timeout=0.5)
            row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return max(0, int(row[1]) - int(row[2])) if row else 0

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class DiskFloor:
    """The free-disk floor under the entry log: below it an append is refused.

    Free space is asked at most once a second while it is above the floor (``statvfs``
    cost 0.06-0.1 ms of each scan's commit on a busy machine) and at every append while it
    is below; between two asks a write that does not fit fails in SQLite and is refused
    all the same.
    """

    def __init__(self, folder: Path, min_free_bytes: int, clock: Clock) -> None:
        self._folder = folder
        self.min_free_bytes = min_free_bytes
        self._clock = clock
        self._ok_at: float | None = None  # monotonic time free disk was last above the floor

    def check(self) -> None:
        """StateError when free disk is below the floor (the scan is then denied)."""
        mono = self._clock.monotonic()
        if self._ok_at is not None and 0.0 <= mono - self._ok_at < ROOM_CHECK_EVERY_S:
            return
        try:
            free = shutil.disk_usage(self._folder).free
        except OSError:
            return  # cannot tell: let SQLite itself report a failing write
        if free >= self.min_free_bytes:
            self._ok_at = mono
            return
        self._ok_at = None
        raise StateError(
            f"only {free // 1_048_576} MB free under {self._folder} (floor "
            f"{self.min_free_bytes // 1_048_576} MB): entries cannot be recorded safely, "
            "so scans are denied; free disk space or let the outbox drain to the centre"
        )


class _Corrupt(sqlite3.DatabaseError):
    """The file opened but failed SQLite's integrity check."""


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """Not-a-database or malformed; not "locked", "busy" or an I/O error."""
    if isinstance(exc, _Corrupt):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
