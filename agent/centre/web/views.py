"""The console's read queries over the centre's store, one function per page.

Each takes an open ``Database`` and plain values and returns plain rows, so pages and
the CSV export run the same query with the same filters (the export holds exactly the
rows the page shows). Entry rows are read from their columns (indexed by time, by
courier and time, by site and time), never by decoding every stored JSON record.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from agent.centre.store.db import Database

ENTRY_FIELDS = ("at", "site", "gate", "seq", "kind", "granted", "reason", "sub", "cti",
                "method", "door", "received_at")
PER_PAGE = 100


@dataclass(frozen=True)
class EntryFilter:
    """What the Entries page searches by; every field optional."""

    sub: str | None = None
    site: str | None = None
    gate: str | None = None
    since: float | None = None
    until: float | None = None
    decision: Literal["granted", "denied"] | None = None
    reason: str | None = None
    page: int = 1

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column in ("sub", "site", "gate", "reason"):
            value = getattr(self, column)
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.since is not None:
            clauses.append("at >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("at < ?")
            params.append(self.until)
        if self.decision is not None:
            clauses.append("granted = ?")
            params.append(self.decision == "granted")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def matches(self, row: dict[str, Any]) -> bool:
        """The same filter on one row (the live feed)."""
        for column in ("sub", "site", "gate", "reason"):
            value = getattr(self, column)
            if value and row.get(column) != value:
                return False
        at = row.get("at")
        if self.since is not None and (at is None or at < self.since):
            return False
        if self.until is not None and (at is None or at >= self.until):
            return False
        return self.decision is None or row.get("granted") is (self.decision == "granted")


def _entry(row: tuple[Any, ...]) -> dict[str, Any]:
    item = dict(zip(ENTRY_FIELDS, row, strict=True))
    item["seq"] = int(item["seq"])
    item["granted"] = None if item["granted"] is None else bool(item["granted"])
    return item


def entries_page(db: Database, flt: EntryFilter,
                 per_page: int = PER_PAGE) -> tuple[list[dict[str, Any]], bool]:
    """One page, newest first, and whether there is a next one."""
    where, params = flt.where()
    offset = (max(1, flt.page) - 1) * per_page
    sql = (f"SELECT {', '.join(ENTRY_FIELDS)} FROM entries{where} "  # noqa: S608 (columns)
           "ORDER BY at DESC, site, gate, seq DESC LIMIT ? OFFSET ?")
    rows = [_entry(r) for r in db.query(sql, [*params, per_page + 1, offset])]
    return rows[:per_page], len(rows) > per_page


def entries_since(db: Database, received_after: float, limit: int = 500) -> list[dict[str, Any]]:
    """Rows the centre received after a moment, oldest first (the live feed's poll)."""
    sql = (f"SELECT {', '.join(ENTRY_FIELDS)} FROM entries "  # noqa: S608 (columns)
           "WHERE received_at > ? ORDER BY received_at LIMIT ?")
    return [_entry(r) for r in db.query(sql, (received_after, limit))]


def latest_received(db: Database) -> float:
    rows = db.query("SELECT max(received_at) FROM entries")
    return float(rows[0][0] or 0.0)


def sites(db: Database) -> list[str]:
    return [s for (s,) in db.query("SELECT site FROM gates UNION SELECT site FROM seq_marks "
                                   "ORDER BY 1")]


def courier(db: Database, sub: str, since: float, day_of: Any) -> dict[str, Any]:
    """Entries per day, gates used, denied attempts and revocation state for one courier."""
    rows = [_entry(r) for r in db.query(
        f"SELECT {', '.join(ENTRY_FIELDS)} FROM entries "  # noqa: S608 (columns)
        "WHERE sub = ? AND at >= ? ORDER BY at DESC", (sub, since))]
    per_day: dict[str, list[int]] = {}
    gates: Counter[tuple[str, str]] = Counter()
    for r in rows:
        day = day_of(r["at"]) if r["at"] is not None else "?"
        counts = per_day.setdefault(day, [0, 0])
        counts[0 if r["granted"] else 1] += 1
        gates[(r["site"], r["gate"])] += 1
    denied = [r for r in rows if r["granted"] is False]
    ctis = sorted({r["cti"] for r in rows if r["cti"]})
    return {"sub": sub, "rows": rows[:PER_PAGE], "total": len(rows),
            "per_day": sorted(per_day.items(), reverse=True),
            "gates": gates.most_common(),
            "denied": denied[:PER_PAGE], "denied_total": len(denied),
            "denied_reasons": Counter(r["reason"] for r in denied).most_common(),
            "revocation": revocation_state(db, sub, ctis)}


def revocation_state(db: Database, sub: str, ctis: list[str]) -> dict[str, Any]:
    rows = db.query("SELECT before, version FROM revocation_entries WHERE kind = 'sub' "
                    "AND value = ?", (sub,))
    revoked_ctis = [c for (c,) in db.query(
        "SELECT value FROM revocation_entries WHERE kind = 'cti'") if c in set(ctis)]
    last = db.query("SELECT version, issued_at, action, who, reason FROM revocation_versions "
                    "WHERE kind = 'sub' AND value = ? ORDER BY version DESC LIMIT 1", (sub,))
    return {"revoked": bool(rows), "before": rows[0][0] if rows else None,
            "version": int(rows[0][1]) if rows else None, "ctis": revoked_ctis,
            "last": dict(zip(("version", "issued_at", "action", "who", "reason"), last[0],
                             strict=True)) if last else None}


def gate_entries(db: Database, site: str, gate: str, limit: int = 50) -> list[dict[str, Any]]:
    return [_entry(r) for r in db.query(
        f"SELECT {', '.join(ENTRY_FIELDS)} FROM entries "  # noqa: S608 (columns)
        "WHERE site = ? AND gate = ? ORDER BY seq DESC LIMIT ?", (site, gate, int(limit)))]


def gate_alarms(db: Database, site: str, gate: str, limit: int = 20) -> list[dict[str, Any]]:
    """The gate's last door alarms (forced, held, tamper, fire and their clears)."""
    out = []
    for at, event in db.query("SELECT at, event FROM entries WHERE site = ? AND gate = ? AND "
                              "kind = 'alarm' ORDER BY seq DESC LIMIT ?",
                              (site, gate, int(limit))):
        try:
            body = json.loads(event)
        except ValueError:
            body = {}
        out.append({"at": at, "alarm": str(body.get("alarm", "?")),
                    "detail": str(body.get("detail") or "")})
    return out


def overview(db: Database, since: float, hour_of: Any, site: str | None) -> list[dict[str, Any]]:
    """Per site since ``since`` (today's midnight): scans per hour, denied share, couriers
    seen; and, where the gates record exit presses, couriers probably inside (grants
    minus exits today: an estimate, since an exit press names nobody)."""
    sql = ("SELECT site, at, kind, granted, sub FROM entries WHERE at >= ? "
           "AND kind IN ('scan', 'exit')")
    params: list[Any] = [since]
    if site:
        sql += " AND site = ?"
        params.append(site)
    out: dict[str, dict[str, Any]] = {}
    for s, at, kind, granted, sub in db.query(sql, params):
        o = out.setdefault(s, {"site": s, "hours": [0] * 24, "total": 0, "denied": 0,
                               "couriers": set(), "exits": 0})
        if kind == "exit":
            o["exits"] += 1
            continue
        o["hours"][hour_of(float(at))] += 1
        o["total"] += 1
        o["denied"] += 0 if granted else 1
        if sub:
            o["couriers"].add(sub)
    result = []
    for o in sorted(out.values(), key=lambda x: x["site"]):
        share = o["denied"] / o["total"] if o["total"] else 0.0
        granted = o["total"] - o["denied"]
        result.append({**o, "couriers": len(o["couriers"]), "denied_share": share,
                       "peak": max(o["hours"]) or 1,
                       "inside": max(0, granted - o["exits"]) if o["exits"] else None})
    return result
