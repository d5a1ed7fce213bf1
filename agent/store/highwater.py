"""High-water marks: what this gate has had, kept in two independent places.

A downgraded, lost or rolled-back state file looks like a healthy older gate unless
something else remembers what the gate had. :class:`HighWater` keeps the same marks in
every copy it is given (``meta.json`` through :class:`agent.store.Meta`, and the entry
log's SQLite ``info`` table), takes the highest value of each mark when it opens, and
reports a copy that is behind (or gone) as a recovery:

- ``revocations_version``: the newest revocation list version ever installed;
- ``entry_seq``: seq numbers reserved for the entry log (never reused, see entrylog);
- ``entry_seq_seen``: the last seq known written (refreshed by ``maintain``);
- ``time_floor``: the highest time a *trusted* clock gave;
- ``replay_horizon``: the latest time a remembered live code stays refused.

Recoveries (``record``) are kept in every copy too, until an operator clears them
(``gate-agent state clear``) or, for the revocation list, a fresh full list does.
Controller thread only (Meta is TinyDB).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)

MARKS_KEY = "high_water"
RECOVERIES_KEY = "recoveries"
MARKS = ("revocations_version", "entry_seq", "entry_seq_seen", "time_floor",
         "replay_horizon")
RECOVERIES_KEPT = 50


class MarkCopy(Protocol):
    """One durable key-value place (``Meta`` and the entry log's info table fit)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _marks_of(raw: Any) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        return {}
    return {k: n for k in MARKS if (n := _number(raw.get(k))) is not None}


class HighWater:
    """The merged marks of every copy; raising a mark writes every copy."""

    def __init__(self, copies: Mapping[str, MarkCopy]) -> None:
        self._copies = dict(copies)
        self._problems: list[str] = []
        found = {name: _marks_of(copy.get(MARKS_KEY)) for name, copy in self._copies.items()}
        merged: dict[str, float] = {}
        for marks in found.values():
            for key, value in marks.items():
                merged[key] = max(merged.get(key, value), value)
        self._marks = merged
        self._recoveries = self._merge_recoveries()
        if merged:
            for name, marks in found.items():
                behind = [f"{k} {marks.get(k)} < {merged[k]:g}" for k in merged
                          if marks.get(k, -1.0) < merged[k]]
                if not marks:
                    self._problem("state", f"{name} had no high-water marks (lost, replaced "
                                  "or from before this version): restored from the other copy")
                elif behind:
                    self._problem("state", f"{name} is behind the other copy ("
                                  + ", ".join(behind) + "): an older copy was restored")
        self._write_all()

    # ---- marks

    def get(self, key: str) -> float | None:
        return self._marks.get(key)

    def raise_to(self, **values: float | None) -> None:
        """Raise marks (never lowers one) and write every copy when something changed."""
        changed = False
        for key, value in values.items():
            if key not in MARKS:
                raise KeyError(f"unknown high-water mark {key!r}")
            if value is not None and value > self._marks.get(key, float("-inf")):
                self._marks[key] = float(value)
                changed = True
        if changed:
            self._write_all()

    def lower_to(self, key: str, value: float, why: str) -> None:
        """Lower one mark on proof (a nonce-answered centre time below a future floor)."""
        self._marks[key] = float(value)
        self._problem("clock", why)

    # ---- recoveries

    def record(self, what: str, detail: str) -> None:
        """Keep a recovery report until cleared; shown by every status command."""
        self._problem(what, detail)

    def recoveries(self, what: str | None = None) -> list[dict[str, Any]]:
        return [dict(r) for r in self._recoveries if what is None or r.get("what") == what]

    def clear(self, what: str | None = None) -> int:
        """Forget recovery reports (all, or one kind); returns how many."""
        before = len(self._recoveries)
        self._recoveries = [r for r in self._recoveries
                            if what is not None and r.get("what") != what]
        if len(self._recoveries) != before:
            self._write_all()
        return before - len(self._recoveries)

    def problems(self) -> list[str]:
        """What this open found (copies behind or missing), for logs."""
        return list(self._problems)

    # ---- internals

    def _problem(self, what: str, detail: str) -> None:
        log.error("%s", detail)
        self._problems.append(detail)
        if any(r.get("what") == what and r.get("detail") == detail for r in self._recoveries):
            return
        self._recoveries.append({"what": what, "detail": detail,
                                 "at": round(time.time(), 3)})
        del self._recoveries[:-RECOVERIES_KEPT]
        self._write_all()

    def _merge_recoveries(self) -> list[dict[str, Any]]:
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for copy in self._copies.values():
            raw = copy.get(RECOVERIES_KEY, [])
            for item in raw if isinstance(raw, list) else []:
                if isinstance(item, dict) and isinstance(item.get("detail"), str):
                    seen.setdefault((str(item.get("what")), item["detail"]), item)
        return sorted(seen.values(), key=lambda r: _number(r.get("at")) or 0.0)

    def _write_all(self) -> None:
        for name, copy in self._copies.items():
            try:
                copy.set(MARKS_KEY, dict(self._marks))
                copy.set(RECOVERIES_KEY, list(self._recoveries))
            except Exception as exc:  # one copy failing must not stop the other
                log.error("cannot write the high-water marks to %s: %s", name, exc)


def read_marks(copies: Mapping[str, MarkCopy]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Merged marks and recoveries without writing anything (status commands)."""
    marks: dict[str, float] = {}
    recoveries: dict[tuple[str, str], dict[str, Any]] = {}
    for copy in copies.values():
        for key, value in _marks_of(copy.get(MARKS_KEY)).items():
            marks[key] = max(marks.get(key, value), value)
        raw = copy.get(RECOVERIES_KEY, [])
        for item in raw if isinstance(raw, list) else []:
            if isinstance(item, dict) and isinstance(item.get("detail"), str):
                recoveries.setdefault((str(item.get("what")), item["detail"]), item)
    return marks, sorted(recoveries.values(), key=lambda r: _number(r.get("at")) or 0.0)
