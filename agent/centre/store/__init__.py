"""The centre's database (SQLite or PostgreSQL, one schema): ingest writes, the hole
sweeper, the revocation list it owns, and read-only queries (``queries``) for the CLI and
the web console. Part of ``agent.centre``: imports core, protocol and sync only."""

from agent.centre.store.db import Database, StoreError, connect

__all__ = ["Database", "StoreError", "connect"]
