"""The centre's schema, one for SQLite and PostgreSQL, as numbered migrations.

``upgrade(db)`` applies every migration above the recorded version, each in its own
transaction, and records it in ``schema_version``; ``gate-centre db upgrade`` runs it,
and ``gate-centre run`` refuses a store that is behind (``check_current``) rather than
migrate a production database on a restart by surprise.

Tables:
- ``entries``: one row per (site, gate, seq), the gate's event id and fields, the whole
  record as sent (``event``, JSON) and ``received_at`` (centre clock); ``at`` is the
  event's ``ts`` as Unix seconds, for time filters.
- ``conflicts``: the same (site, gate, seq) arriving with another id (a restored or
  cloned SD card), kept apart, never overwriting ``entries``.
- ``gates``: the last status or last will per gate, with the centre's receive times.
- ``seq_marks``, ``holes``, ``lost``: the hole sweeper's progress per gate (and the
  newest seq the gate's status reports sent, so a lost tail is a hole too), open holes
  with their resend attempts, and ranges the gate could not send again.
- ``revocation_entries`` (the current list), ``revocation_versions`` (history with the
  signed delta), ``revocation_full`` (the latest signed, compacted full list).
- ``console_users``, ``console_audit``, ``console_commands``, ``gate_history``: the web
  console's staff accounts, audit log, commands it sent with the gates' results, and
  each gate's online/offline changes (``agent.centre.web.records``).
"""

from __future__ import annotations

import time

from agent.centre.store.db import Database, StoreError

_TYPES = {
    "sqlite": {"blob": "BLOB", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgresql": {"blob": "BYTEA", "serial": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"},
}

MIGRATIONS: list[list[str]] = [
    [  # 1: the first schema
        """CREATE TABLE entries (
            site TEXT NOT NULL, gate TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL,
            ts TEXT, at DOUBLE PRECISION, kind TEXT, granted BOOLEAN, reason TEXT,
            sub TEXT, cti TEXT, method TEXT, door TEXT, event TEXT NOT NULL,
            received_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (site, gate, seq))""",
        "CREATE INDEX entries_at ON entries (at)",
        "CREATE INDEX entries_sub ON entries (sub, at)",
        "CREATE INDEX entries_received ON entries (received_at)",
        """CREATE TABLE conflicts (
            n {serial}, site TEXT NOT NULL, gate TEXT NOT NULL, seq BIGINT NOT NULL,
            id TEXT NOT NULL, stored_id TEXT NOT NULL, event TEXT NOT NULL,
            received_at DOUBLE PRECISION NOT NULL, UNIQUE (site, gate, seq, id))""",
        """CREATE TABLE gates (
            site TEXT NOT NULL, gate TEXT NOT NULL, online BOOLEAN NOT NULL,
            since DOUBLE PRECISION, last_seen DOUBLE PRECISION NOT NULL,
            status TEXT NOT NULL, PRIMARY KEY (site, gate))""",
        """CREATE TABLE seq_marks (
            site TEXT NOT NULL, gate TEXT NOT NULL, upto BIGINT NOT NULL,
            PRIMARY KEY (site, gate))""",
        """CREATE TABLE holes (
            site TEXT NOT NULL, gate TEXT NOT NULL, seq_from BIGINT NOT NULL,
            seq_to BIGINT NOT NULL, first_seen DOUBLE PRECISION NOT NULL,
            resends INTEGER NOT NULL DEFAULT 0, last_resend_at DOUBLE PRECISION,
            last_cmd TEXT, last_result TEXT, PRIMARY KEY (site, gate, seq_from))""",
        """CREATE TABLE lost (
            site TEXT NOT NULL, gate TEXT NOT NULL, seq_from BIGINT NOT NULL,
            seq_to BIGINT NOT NULL, recorded_at DOUBLE PRECISION NOT NULL,
            reason TEXT NOT NULL, PRIMARY KEY (site, gate, seq_from))""",
        """CREATE TABLE revocation_entries (
            kind TEXT NOT NULL, value TEXT NOT NULL, before BIGINT,
            version BIGINT NOT NULL, PRIMARY KEY (kind, value))""",
        """CREATE TABLE revocation_versions (
            version BIGINT PRIMARY KEY, issued_at BIGINT NOT NULL, action TEXT NOT NULL,
            kind TEXT NOT NULL, value TEXT NOT NULL, before BIGINT, reason TEXT,
            who TEXT NOT NULL, entries BIGINT NOT NULL, delta {blob} NOT NULL,
            published_at DOUBLE PRECISION)""",
        """CREATE TABLE revocation_full (
            version BIGINT PRIMARY KEY, body {blob} NOT NULL)""",
    ],
    [  # 2: the console (agent.centre.web): staff, audit, commands sent, gate history
        """CREATE TABLE console_users (
            name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL,
            disabled BOOLEAN NOT NULL, created_at DOUBLE PRECISION NOT NULL,
            changed_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE console_audit (
            n {serial}, at DOUBLE PRECISION NOT NULL, who TEXT NOT NULL,
            action TEXT NOT NULL, target TEXT, ok BOOLEAN NOT NULL, detail TEXT,
            addr TEXT)""",
        "CREATE INDEX console_audit_at ON console_audit (at)",
        """CREATE TABLE console_commands (
            id TEXT PRIMARY KEY, site TEXT NOT NULL, gate TEXT NOT NULL,
            action TEXT NOT NULL, args TEXT NOT NULL, who TEXT NOT NULL,
            sent_at DOUBLE PRECISION NOT NULL, published BOOLEAN NOT NULL,
            result_ok BOOLEAN, result_reason TEXT, result_detail TEXT,
            result_at DOUBLE PRECISION)""",
        "CREATE INDEX console_commands_gate ON console_commands (site, gate, sent_at)",
        """CREATE TABLE gate_history (
            n {serial}, site TEXT NOT NULL, gate TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL, online BOOLEAN NOT NULL, detail TEXT)""",
        "CREATE INDEX gate_history_gate ON gate_history (site, gate, at)",
        "CREATE INDEX entries_site_at ON entries (site, at)",
    ],
    [  # 3: the newest seq each gate's status says it has sent for good (tail holes)
        "ALTER TABLE seq_marks ADD COLUMN reported BIGINT NOT NULL DEFAULT 0",
    ],
]

LATEST = len(MIGRATIONS)


def current_version(db: Database) -> int:
    """The applied schema version; 0 for an empty database."""
    if db.dialect == "sqlite":
        present = db.query("SELECT 1 FROM sqlite_master WHERE type='table' "
                           "AND name='schema_version'")
    else:
        present = db.query("SELECT 1 FROM information_schema.tables "
                           "WHERE table_name='schema_version' AND table_schema=current_schema()")
    if not present:
        return 0
    rows = db.query("SELECT max(version) FROM schema_version")
    return int(rows[0][0] or 0)


def upgrade(db: Database) -> tuple[int, int]:
    """Apply the missing migrations; return (version before, version now)."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_version ("
               "version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
    before = current_version(db)
    if before > LATEST:
        raise StoreError(f"store {db.where} has schema version {before}, newer than this "
                         f"gate-centre knows ({LATEST}): upgrade gate-centre")
    types = _TYPES[db.dialect]
    for number in range(before + 1, LATEST + 1):
        with db.transaction():
            for statement in MIGRATIONS[number - 1]:
                db.execute(statement.format(**types))
            db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                       (number, time.time()))
    return before, LATEST


def check_current(db: Database) -> None:
    """StoreError unless the schema is exactly the one this code writes."""
    version = current_version(db)
    if version != LATEST:
        raise StoreError(f"store {db.where} has schema version {version}, this gate-centre "
                         f"needs {LATEST}: run `gate-centre db upgrade` first")
