"""The revocation list the centre owns: current entries, versions, signed delta and full list.

``change`` runs in one transaction: it reads the current version, builds the delta from
it and the compacted full list after it, signs both, **checks both against the gates'
ops trust** (a list signed with the wrong key must never replace the good retained one),
and only then writes the new entries, the history row (who, when, why, the signed delta)
and the latest full list. Publishing is separate (``unpublished`` / ``mark_published``),
so a broker outage delays a change but never loses or reorders one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.centre.store.db import Database, StoreError
from agent.core.errors import GateError
from agent.protocol.keys import KeyRing, SigningKey
from agent.protocol.revocation import (
    RevocationEntry,
    RevocationList,
    parse_revocation_list,
    sign_revocation_list,
)


class NothingToChange(GateError, ValueError):
    """Revoking what is already revoked, or lifting what is not (exit 1, nothing written)."""


@dataclass(frozen=True)
class Change:
    version: int
    delta: bytes
    full: bytes
    entries: int


def entry_text(entry: RevocationEntry) -> str:
    if entry.kind == "cti":
        return f"cti:{entry.value}"
    return f"sub:{entry.value}" + (f" before {entry.before}" if entry.before is not None else "")


def current(db: Database) -> tuple[int, list[RevocationEntry]]:
    rows = db.query("SELECT max(version) FROM revocation_versions")
    version = int(rows[0][0] or 0)
    entries = [RevocationEntry(k, v, None if b is None else int(b)) for k, v, b in db.query(
        "SELECT kind, value, before FROM revocation_entries ORDER BY kind, value")]
    return version, entries


def change(db: Database, action: Literal["revoke", "unrevoke"], entry: RevocationEntry, *,
           reason: str | None, who: str, key: SigningKey, kid: str, trust: KeyRing,
           now: float) -> Change:
    """Make one revocation or lift it; NothingToChange, RevocationListError (trust)."""
    with db.transaction():
        version, entries = current(db)
        existing = next((e for e in entries if (e.kind, e.value) == (entry.kind, entry.value)),
                        None)
        add: tuple[RevocationEntry, ...] = ()
        remove: tuple[RevocationEntry, ...] = ()
        if action == "revoke":
            if existing == entry:
                raise NothingToChange(f"{entry_text(entry)} is already revoked (version "
                                      f"{version}): nothing changed")
            add = (entry,)
            remove = (existing,) if existing else ()
            after = [e for e in entries if e is not existing] + [entry]
        else:
            if existing is None:
                raise NothingToChange(f"{entry.kind}:{entry.value} is not revoked: "
                                      "nothing changed (see gate-centre revocations)")
            remove = (existing,)
            after = [e for e in entries if e is not existing]
        new = version + 1
        issued = int(now)
        delta = sign_revocation_list(
            RevocationList("delta", new, version, issued, add, remove), key, kid)
        full = sign_revocation_list(
            RevocationList("full", new, None, issued, tuple(after)), key, kid)
        for data in (delta, full):  # RevocationListError: rolled back, nothing published
            parse_revocation_list(data, trust, now)
        if existing is not None:
            db.execute("DELETE FROM revocation_entries WHERE kind = ? AND value = ?",
                       (existing.kind, existing.value))
        if action == "revoke":
            db.execute("INSERT INTO revocation_entries (kind, value, before, version) "
                       "VALUES (?, ?, ?, ?)", (entry.kind, entry.value, entry.before, new))
        try:
            db.execute("INSERT INTO revocation_versions (version, issued_at, action, kind, value, "
                       "before, reason, who, entries, delta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (new, issued, action, entry.kind, entry.value, entry.before, reason, who,
                        len(after), delta))
        except StoreError as exc:
            raise StoreError(f"{exc} (another change took version {new} at the same "
                             "moment: run the command again)") from exc
        db.execute("DELETE FROM revocation_full")
        db.execute("INSERT INTO revocation_full (version, body) VALUES (?, ?)", (new, full))
    return Change(new, delta, full, len(after))


def ensure_first_list(db: Database, *, key: SigningKey, kid: str, trust: KeyRing,
                      now: float) -> tuple[int, bytes]:
    """The newest full list; a centre that never made one makes version 1, empty.

    A gate that has never had a list refuses every courier (``revocations_unknown``), so a
    new district's gates need a first, empty list from the centre before anyone is revoked.
    """
    with db.transaction():
        full = latest_full(db)
        if full is not None:
            return full
        issued = int(now)
        body = sign_revocation_list(RevocationList("full", 1, None, issued, ()), key, kid)
        delta = sign_revocation_list(RevocationList("delta", 1, 0, issued, (), ()), key, kid)
        for data in (delta, body):  # RevocationListError: nothing stored
            parse_revocation_list(data, trust, now)
        db.execute("INSERT INTO revocation_versions (version, issued_at, action, kind, value, "
                   "before, reason, who, entries, delta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (1, issued, "initial", "-", "-", None, "first list of this centre",
                    "gate-centre", 0, delta))
        db.execute("INSERT INTO revocation_full (version, body) VALUES (?, ?)", (1, body))
    return 1, body


def latest_full(db: Database) -> tuple[int, bytes] | None:
    rows = db.query("SELECT version, body FROM revocation_full ORDER BY version DESC LIMIT 1")
    return (int(rows[0][0]), bytes(rows[0][1])) if rows else None


def unpublished(db: Database) -> list[tuple[int, bytes]]:
    """Deltas not yet on the broker, oldest first."""
    return [(int(v), bytes(d)) for v, d in db.query(
        "SELECT version, delta FROM revocation_versions WHERE published_at IS NULL "
        "ORDER BY version")]


def mark_published(db: Database, up_to: int, now: float) -> None:
    with db.transaction():
        db.execute("UPDATE revocation_versions SET published_at = ? "
                   "WHERE version <= ? AND published_at IS NULL", (now, up_to))
