"""Replay cache: a dynamic presentation is accepted once within its validity window.

Keys live in a dict (the scan path reads it) mirrored in a TinyDB file
(``replay.json``) so a restart does not reopen the window. Keys are kept until their
``until`` time has passed, then pruned. Only the controller thread writes it.

``read_only=True`` (``gate-agent verify`` while the daemon runs) reads the file once
and never writes it: keys remembered or pruned then live in memory only, so two
processes never race to replace the file (the loser's keys would vanish from disk).
"""

from __future__ import annotations

import logging
from pathlib import Path

from agent.core.clock import Clock, SystemClock
from agent.store.atomic_storage import open_tinydb, open_tinydb_read_only
from agent.store.files import ensure_dir

log = logging.getLogger(__name__)

REPLAY_FILE = "replay.json"


class ReplayCache:
    """``seen``/``remember`` with self-pruning; survives restarts.

    A key still stored counts as seen even past its ``until`` (deny on doubt);
    ``prune`` runs from ``remember`` at most every ``prune_every_s`` seconds.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        clock: Clock | None = None,
        prune_every_s: float = 60.0,
        read_only: bool = False,
    ) -> None:
        self._clock = clock or SystemClock()
        self._prune_every_s = prune_every_s
        self.read_only = read_only
        self._problems: list[str] = []
        path = Path(state_dir) / REPLAY_FILE
        if read_only:  # a corrupt file raises CorruptStateError: nothing is moved aside
            self._db = open_tinydb_read_only(path)
        else:
            ensure_dir(Path(state_dir))
            self._db = open_tinydb(path, self._clock.now(), self._problems)
        if self._problems:
            log.error(
                "replay cache lost: a presentation used before this restart may be "
                "accepted once more within its window"
            )
        self._table = self._db.table("replay")
        self._until: dict[str, tuple[float, int]] = {}
        for doc in self._table.all():
            key, until = doc.get("k"), doc.get("u")
            if isinstance(key, str) and isinstance(until, int | float):
                self._until[key] = (float(until), doc.doc_id)
        self._last_prune = self._clock.now()
        self.prune()

    def seen(self, key: str) -> bool:
        return key in self._until

    def refuses(self, until: float) -> bool:
        """This file-backed cache cannot tell what it lost (see agent/store/replaylog.py)."""
        return False

    def remember(self, key: str, until: float) -> None:
        """Store ``key`` durably until ``until`` (Unix seconds)."""
        now = self._clock.now()
        if now - self._last_prune >= self._prune_every_s:
            self.prune(now)
        if key in self._until and self._until[key][0] >= until:
            return
        if self.read_only:
            self._until[key] = (until, 0)
            return
        if key in self._until:
            self._table.update({"u": until}, doc_ids=[self._until[key][1]])
            self._until[key] = (until, self._until[key][1])
            return
        doc_id = self._table.insert({"k": key, "u": until})
        self._until[key] = (until, doc_id)

    def prune(self, now: float | None = None) -> int:
        """Forget keys whose window has passed; returns how many."""
        at = self._clock.now() if now is None else now
        self._last_prune = at
        expired = [key for key, (until, _) in self._until.items() if until < at]
        if not expired:
            return 0
        if not self.read_only:
            self._table.remove(doc_ids=[self._until[key][1] for key in expired])
        for key in expired:
            del self._until[key]
        return len(expired)

    def __len__(self) -> int:
        return len(self._until)

    def problems(self) -> list[str]:
        return list(self._problems)

    def close(self) -> None:
        self._db.close()
