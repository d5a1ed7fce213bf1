"""Small durable key-value state: the time floor, last alarms, counters people ask about.

A TinyDB file (``meta.json``) through the atomic storage, mirrored in a dict so reads
cost nothing. Only the controller thread writes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinydb.table import Document

from agent.core.clock import Clock, SystemClock
from agent.core.errors import StateError
from agent.store.atomic_storage import open_tinydb, open_tinydb_read_only
from agent.store.files import ensure_dir

META_FILE = "meta.json"


class Meta:
    """Durable ``get``/``set`` of JSON values; a corrupt file is moved aside, reported,
    and the store starts empty (callers treat a missing time floor as "unknown")."""

    def __init__(
        self, state_dir: Path, *, clock: Clock | None = None, read_only: bool = False
    ) -> None:
        """``read_only``: for status commands; creates nothing, a corrupt file raises."""
        self._problems: list[str] = []
        self.read_only = read_only
        if read_only:
            self._db = open_tinydb_read_only(Path(state_dir) / META_FILE)
        else:
            ensure_dir(Path(state_dir))
            now = (clock or SystemClock()).now()
            self._db = open_tinydb(Path(state_dir) / META_FILE, now, self._problems)
        self._table = self._db.table("meta")
        self._values: dict[str, Any] = {}
        self._ids: dict[str, int] = {}
        for doc in self._table.all():
            if isinstance(doc.get("k"), str) and "v" in doc:
                self._values[doc["k"]] = doc["v"]
                self._ids[doc["k"]] = doc.doc_id

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON types only) durably before returning."""
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise StateError(f"meta value for {key!r} is not JSON-serialisable: {exc}") from exc
        if key in self._values and self._values[key] == value:
            return
        if self.read_only:
            raise StateError(f"meta.json was opened read-only; {key!r} not written")
        doc_id = self._ids.get(key)
        if doc_id is None:
            doc_id = self._table.insert({"k": key, "v": value})
        else:
            self._table.upsert(Document({"k": key, "v": value}, doc_id=doc_id))
        self._ids[key] = doc_id
        self._values[key] = value

    def problems(self) -> list[str]:
        return list(self._problems)

    def close(self) -> None:
        self._db.close()
