"""One connection to the centre's database, SQLite or PostgreSQL, behind five methods.

SQL in this package is written once with ``?`` placeholders and types both engines
accept (TEXT, BIGINT, DOUBLE PRECISION, BOOLEAN); ``{blob}`` and ``{serial}`` in schema
text are filled per dialect. SQLite runs in WAL mode with ``synchronous=FULL`` (a commit
is on disk when it returns, as on the gate); PostgreSQL through psycopg 3, whose
``executemany`` pipelines a batch in one round trip. Every driver error becomes a
``StoreError`` that says what to check, so callers handle one exception type.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from agent.core.errors import GateError

Dialect = Literal["sqlite", "postgresql"]
Row = tuple[Any, ...]

BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_S = 5


class StoreError(GateError, ConnectionError):
    """The centre's database refused or failed an operation (nothing was committed)."""


class Database:
    """A single connection; not shared between threads (each thread opens its own)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect: Dialect
        self._conn: Any
        if url.startswith("sqlite://"):
            self.dialect = "sqlite"
            self.path = Path(url[len("sqlite://"):])
            self._conn = self._open_sqlite(self.path)
        elif url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            self._conn = self._open_postgres(url)
        else:
            raise StoreError(f"store URL {url!r} is neither sqlite:// nor postgresql://")
        self._in_tx = False

    @property
    def where(self) -> str:
        """The URL without a password, for messages."""
        if self.dialect == "sqlite":
            return str(self.path)
        head, sep, tail = self.url.rpartition("@")
        if not sep:
            return self.url
        scheme, _, user = head.partition("://")
        return f"{scheme}://{user.split(':')[0]}@{tail}"

    @staticmethod
    def _open_sqlite(path: Path) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the SQLite store {path}: {exc} "
                             "(check the folder exists and the service user may write it)"
                             ) from None
        return conn

    def _open_postgres(self, url: str) -> Any:
        try:
            import psycopg
        except ImportError:
            raise StoreError("PostgreSQL needs psycopg 3: pip install 'psycopg[binary]'"
                             ) from None
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"cannot connect to PostgreSQL at {self.where}: {first} "
                             "(check that the server runs, the URL, and pg_hba.conf)") from None

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            if not _is_driver_error(exc):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"store {self.where}: {what} failed: {first}") from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the rows it changed."""
        with self._errors("a statement"):
            cur = self._conn.execute(self._sql(sql), tuple(params))
            return int(cur.rowcount or 0)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        with self._errors("a batch"):
            if self.dialect == "sqlite":
                cur = self._conn.executemany(sql, rows)
                return int(cur.rowcount or 0)
            with self._conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)
                return int(cur.rowcount or 0)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._errors("a query"):
            cur = self._conn.execute(self._sql(sql), tuple(params))
            return [tuple(r) for r in cur.fetchall()]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """All or nothing; the commit is durable when the block exits without error."""
        if self._in_tx:
            raise RuntimeError("nested store transaction")
        with self._errors("a transaction"):
            if self.dialect == "sqlite":
                self._conn.execute("BEGIN IMMEDIATE")
                self._in_tx = True
                try:
                    yield self
                    self._conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise
                finally:
                    self._in_tx = False
            else:
                self._in_tx = True
                try:
                    with self._conn.transaction():
                        yield self
                finally:
                    self._in_tx = False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()


def _is_driver_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return True
    module = type(exc).__module__
    return module.startswith("psycopg")


def connect(url: str) -> Database:
    return Database(url)
