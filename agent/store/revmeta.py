"""What the revocation cache reports: its status record and its TinyDB metadata.

``revocations.json`` (installed version, issue time, apply history) is for people and
the status topic; the list files are the truth when the two disagree. Only
:mod:`agent.store.revocations` uses this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.table import Document

from agent.store.atomic_storage import open_tinydb

HISTORY_KEPT = 50


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


class ListMeta:
    """The metadata document: what is installed, and the last applies."""

    def __init__(self, path: Path, now: float, problems: list[str]) -> None:
        self._db: TinyDB | None = open_tinydb(path, now, problems)

    def history(self) -> list[dict[str, Any]]:
        """The last applies (version, kind, applied_at, entries), oldest first."""
        if self._db is None:
            return []
        doc = self._db.table("list").get(doc_id=1)
        return list(doc.get("history", [])) if isinstance(doc, dict) else []

    def sync(self, installed: dict[str, Any]) -> None:
        """Make the metadata agree with the list files (they win after a crash)."""
        assert self._db is not None
        doc = self._db.table("list").get(doc_id=1)
        stored = doc.get("installed") if isinstance(doc, dict) else None
        if stored != installed:
            self.write(installed, self.history())

    def record(self, installed: dict[str, Any], entry: dict[str, Any]) -> None:
        """Add one apply to the history (StateError when the file cannot be written)."""
        history = self.history()
        history.append(entry)
        self.write(installed, history[-HISTORY_KEPT:])

    def write(self, installed: dict[str, Any], history: list[dict[str, Any]]) -> None:
        assert self._db is not None
        self._db.table("list").upsert(
            Document({"installed": installed, "history": history}, doc_id=1)
        )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
