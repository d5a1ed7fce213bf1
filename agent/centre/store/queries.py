"""Read-only queries for staff: the CLI prints them, the web console may call them.

Each function takes an open ``Database`` and plain values, and returns JSON-ready dicts
(times as ISO 8601 UTC strings), so a web layer needs nothing else from this package.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from agent.centre.store.db import Database
from agent.core.timefmt import format_instant

STALE_AFTER_S = 180.0  # an "online" gate silent this long is stale (3 status periods)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else format_instant(float(ts))


def entries(db: Database, *, site: str | None = None, gate: str | None = None,
            sub: str | None = None, since: float | None = None, until: float | None = None,
            reason: str | None = None, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Stored events, oldest first (by event time, then site, gate, seq)."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("site", site), ("gate", gate), ("sub", sub), ("reason", reason)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    if until is not None:
        where.append("at < ?")
        params.append(until)
    sql = "SELECT event, received_at FROM entries"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY at, site, gate, seq"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    for event, received_at in db.query(sql, params):
        record = json.loads(event)
        record["received_at"] = _iso(received_at)
        yield record


def conflicts(db: Database, *, site: str | None = None,
              gate: str | None = None) -> list[dict[str, Any]]:
    """Same (site, gate, seq) with another id: the events kept apart."""
    rows = db.query("SELECT site, gate, seq, id, stored_id, event, received_at FROM conflicts "
                    "ORDER BY n")
    return [{"site": s, "gate": g, "seq": int(q), "id": i, "stored_id": si,
             "event": json.loads(e), "received_at": _iso(r)}
            for s, g, q, i, si, e, r in rows
            if (site is None or s == site) and (gate is None or g == gate)]


def gates(db: Database, now: float, *, problems_only: bool = False) -> list[dict[str, Any]]:
    """One dict per gate known from status or events; gates with problems first."""
    status = {(s, g): (bool(o), since, seen, json.loads(st)) for s, g, o, since, seen, st in
              db.query("SELECT site, gate, online, since, last_seen, status FROM gates")}
    holes: dict[tuple[str, str], list[list[int]]] = {}
    for s, g, a, b in db.query("SELECT site, gate, seq_from, seq_to FROM holes "
                               "ORDER BY site, gate, seq_from"):
        holes.setdefault((s, g), []).append([int(a), int(b)])
    lost: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s, g, a, b, at, why in db.query("SELECT site, gate, seq_from, seq_to, recorded_at, "
                                        "reason FROM lost ORDER BY site, gate, seq_from"):
        lost.setdefault((s, g), []).append({"from": int(a), "to": int(b),
                                            "recorded_at": _iso(at), "reason": why})
    clashes: dict[tuple[str, str], int] = {}
    for s, g, n in db.query("SELECT site, gate, count(*) FROM conflicts GROUP BY site, gate"):
        clashes[(s, g)] = int(n)
    known = set(status) | set(holes) | set(lost) | set(clashes)
    known |= {(s, g) for s, g in db.query("SELECT site, gate FROM seq_marks")}
    out = []
    for key in sorted(known):
        online, since, seen, body = status.get(key, (False, None, None, {}))
        rev = body.get("revocations") if isinstance(body.get("revocations"), dict) else {}
        alarms = body.get("alarms") or {}
        row: dict[str, Any] = {
            "site": key[0], "gate": key[1], "online": online, "since": _iso(since),
            "last_seen": _iso(seen),
            "revocations_version": rev.get("version"),
            "revocations_age_s": rev.get("age_s"),
            "backlog": body.get("backlog", body.get("outbox_backlog")),
            "clock": body.get("clock"), "alarms": alarms,
            "holes": holes.get(key, []), "lost": lost.get(key, []),
            "conflicts": clashes.get(key, 0), "reason": body.get("reason"),
        }
        row["problems"] = _problems(row, seen, now, key in status)
        if not problems_only or row["problems"]:
            out.append(row)
    out.sort(key=lambda r: (not r["problems"], r["site"], r["gate"]))
    return out


def _problems(row: dict[str, Any], seen: float | None, now: float, has_status: bool) -> list[str]:
    found = []
    if not has_status:
        found.append("no_status")
    elif not row["online"]:
        found.append("offline")
    elif seen is not None and now - float(seen) > STALE_AFTER_S:
        found.append("stale")
    if row["holes"]:
        found.append("holes")
    if row["lost"]:
        found.append("lost")
    if row["conflicts"]:
        found.append("conflicts")
    if row["alarms"]:
        found.append("alarms")
    clock = row["clock"]
    if isinstance(clock, dict) and clock.get("trusted") is False:
        found.append("clock_untrusted")
    return found


def revocations(db: Database, *, history: int = 50) -> dict[str, Any]:
    """``{"version", "entries", "published_at", "issued_at", "history": [...]}``."""
    rows = db.query("SELECT version, issued_at, action, kind, value, before, reason, who, "
                    "entries, published_at FROM revocation_versions ORDER BY version DESC "
                    "LIMIT ?", (int(history),))
    count = db.query("SELECT count(*) FROM revocation_entries")[0][0]
    items = [{"version": int(v), "issued_at": _iso(t), "action": a, "kind": k, "value": val,
              "before": _iso(b) if b is not None else None, "reason": r, "who": w,
              "entries": int(n), "published_at": _iso(p)}
             for v, t, a, k, val, b, r, w, n, p in rows]
    head = items[0] if items else None
    return {"version": head["version"] if head else None, "entries": int(count),
            "issued_at": head["issued_at"] if head else None,
            "published_at": head["published_at"] if head else None, "history": items}
