"""Durable local state under ``[state] dir``: see docs/storage.md.

TinyDB (through :mod:`agent.store.atomic_storage`) for the small verification cache
files, a sorted memory-mapped table for the revocation list itself, SQLite for the
append-heavy entry log/outbox. Only the controller thread writes the TinyDB files.
Imports core and protocol; used by the gate, the runtime and the CLI (never the centre).
"""

from agent.store.entries import Entry, OutboxStatus
from agent.store.entrylog import EntryLog
from agent.store.meta import Meta
from agent.store.replay import ReplayCache
from agent.store.revocations import RevocationStatus, RevocationStore

__all__ = [
    "Entry",
    "EntryLog",
    "Meta",
    "OutboxStatus",
    "ReplayCache",
    "RevocationStatus",
    "RevocationStore",
]
