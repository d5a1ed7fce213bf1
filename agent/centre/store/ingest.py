"""Writing what the gates send: entry-log events (exactly once) and status messages.

Exactly once from at-least-once delivery (the pretix model): (site, gate, seq) is the
key and carries the event id. ``store_events`` inserts a batch with ``ON CONFLICT DO
NOTHING``, then reads back the ids under the batch's keys: the same id is stored (new or
a duplicate: both are acknowledged again), another id is a **conflict** (a restored or
cloned SD card) and goes to ``conflicts``, never over the stored row. Conflicts are
acknowledged too, since they are stored durably apart. One transaction per batch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.centre.store.db import Database
from agent.core.errors import UsageError
from agent.core.timefmt import parse_instant

log = logging.getLogger(__name__)

MAX_ID = 64
ENTRY_COLUMNS = ("site", "gate", "seq", "id", "ts", "at", "kind", "granted", "reason", "sub",
                 "cti", "method", "door", "event", "received_at")
_INSERT = (f"INSERT INTO entries ({', '.join(ENTRY_COLUMNS)}) "  # noqa: S608 (constants)
           f"VALUES ({', '.join('?' for _ in ENTRY_COLUMNS)}) "
           "ON CONFLICT (site, gate, seq) DO NOTHING")
_INSERT_CONFLICT = ("INSERT INTO conflicts (site, gate, seq, id, stored_id, event, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site, gate, seq, id) DO NOTHING")


@dataclass(frozen=True)
class Incoming:
    """One event as received: where from, its key, the record, when the centre got it."""

    site: str
    gate: str
    seq: int
    id: str
    event: dict[str, Any]
    received_at: float
    raw: str | None = None  # the JSON text as the gate sent it (stored as is)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.site, self.gate, self.seq)


@dataclass
class BatchResult:
    """What one committed batch did; ``acks`` are the exact seqs per gate to acknowledge."""

    acks: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    new: int = 0
    duplicates: int = 0
    conflicts: list[tuple[Incoming, str]] = field(default_factory=list)  # (event, stored id)


def parse_event(topic: str, payload: bytes, received_at: float) -> Incoming:
    """Read one ``gate/v1/{site}/{gate}/events`` message; ValueError says what is wrong.

    The topic names the gate (the broker's ACL protects it); a body naming another gate
    is refused rather than filed under either.
    """
    parts = topic.split("/")
    if len(parts) != 5 or parts[:2] != ["gate", "v1"] or parts[4] != "events":
        raise ValueError(f"topic {topic!r} is not gate/v1/SITE/GATE/events")
    site, gate = parts[2], parts[3]
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"event on {topic} is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError(f"event on {topic} is not a JSON object")
    seq, event_id = body.get("seq"), body.get("id")
    if type(seq) is not int or seq < 1:
        raise ValueError(f"event on {topic} has no positive integer seq")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= MAX_ID:
        raise ValueError(f"event on {topic} has no id of 1-{MAX_ID} characters")
    for name, expected in (("site", site), ("gate", gate)):
        if name in body and body[name] != expected:
            raise ValueError(f"event on {topic} names {name} {body[name]!r}")
    return Incoming(site, gate, seq, event_id, body, received_at, payload.decode("utf-8"))


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def _at(ts: Any) -> float | None:
    if not isinstance(ts, str):
        return None
    try:
        return parse_instant(ts)
    except UsageError:
        return None


def _row(item: Incoming) -> tuple[Any, ...]:
    e = item.event
    granted = e.get("granted")
    return (item.site, item.gate, item.seq, item.id, _text(e.get("ts")), _at(e.get("ts")),
            _text(e.get("kind")), granted if isinstance(granted, bool) else None,
            _text(e.get("reason")), _text(e.get("sub")), _text(e.get("cti")),
            _text(e.get("method")), _text(e.get("door")),
            item.raw if item.raw is not None else
            json.dumps(e, separators=(",", ":"), ensure_ascii=False, default=str),
            item.received_at)


def store_events(db: Database, items: Sequence[Incoming],
                 known_gates: set[tuple[str, str]] | None = None) -> BatchResult:
    """Store a batch in one transaction; the result says what to acknowledge.

    ``known_gates`` (the caller's memory of gates whose ``seq_marks`` row exists) saves
    one upsert per gate per batch; it is updated after the commit.
    """
    known = known_gates if known_gates is not None else set()
    result = BatchResult()
    unique: dict[tuple[str, str, int], Incoming] = {}
    same_batch: list[Incoming] = []
    for item in items:
        first = unique.setdefault(item.key, item)
        if first is not item and first.id != item.id:
            same_batch.append(item)  # decided once the first one's fate is known
    chosen = list(unique.values())
    with db.transaction():
        inserted = db.executemany(_INSERT, [_row(i) for i in chosen])
        stored = _stored_ids(db, chosen) if inserted != len(chosen) else \
            {i.key: i.id for i in chosen}
        for item in [*chosen, *same_batch]:
            stored_id = stored.get(item.key)
            if stored_id is None:  # cannot happen inside the transaction; deny on doubt
                log.error("event %s/%s seq %d vanished while storing", *item.key)
                continue
            if stored_id != item.id:
                result.conflicts.append((item, stored_id))
            result.acks.setdefault((item.site, item.gate), []).append(item.seq)
        fresh_gates = sorted({(i.site, i.gate) for i in chosen} - known)
        db.executemany("INSERT INTO seq_marks (site, gate, upto) VALUES (?, ?, 0) "
                       "ON CONFLICT (site, gate) DO NOTHING", fresh_gates)
        if result.conflicts:
            db.executemany(_INSERT_CONFLICT, [
                (i.site, i.gate, i.seq, i.id, sid,
                 json.dumps(i.event, separators=(",", ":"), default=str), i.received_at)
                for i, sid in result.conflicts])
    known.update(fresh_gates)
    result.new = inserted
    result.duplicates = len(items) - inserted - len(result.conflicts)
    for seqs in result.acks.values():
        seqs.sort()
    return result


def _stored_ids(db: Database, items: Sequence[Incoming]) -> dict[tuple[str, str, int], str]:
    found: dict[tuple[str, str, int], str] = {}
    for start in range(0, len(items), 300):
        chunk = items[start:start + 300]
        values = ", ".join("(?, ?, ?)" for _ in chunk)
        params: list[Any] = []
        for item in chunk:
            params.extend(item.key)
        sql = ("SELECT site, gate, seq, id FROM entries WHERE (site, gate, seq) IN "  # noqa: S608
               f"(VALUES {values})")  # placeholders only
        for site, gate, seq, event_id in db.query(sql, params):
            found[(site, gate, int(seq))] = event_id
    return found


# ---- status ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusUpdate:
    site: str
    gate: str
    body: dict[str, Any]
    received_at: float
    retained: bool


def parse_status(topic: str, payload: bytes, received_at: float,
                 retained: bool) -> StatusUpdate | None:
    """A gate's retained status or last will; None for an empty (cleared) one."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[4] != "status":
        raise ValueError(f"topic {topic!r} is not gate/v1/SITE/GATE/status")
    if not payload:
        return None
    body = json.loads(payload)
    if not isinstance(body, dict) or not isinstance(body.get("online"), bool):
        raise ValueError(f"status on {topic} is not a JSON object with online true/false")
    return StatusUpdate(parts[2], parts[3], body, received_at, retained)


def sent_upto(body: dict[str, Any]) -> int | None:
    """The newest seq a status says left the gate's outbox for good: its newest recorded
    seq less what still waits there (``outbox.last_seq - outbox.backlog``, or the same
    keys at the top). Conservative: a waiting row is counted as if it were the newest
    (a requeued older one only lowers the bound). None when the status does not say."""
    outbox = body.get("outbox")
    source = outbox if isinstance(outbox, dict) else body
    last, waiting = source.get("last_seq"), source.get("backlog")
    if type(last) is not int or type(waiting) is not int or waiting < 0 or last <= waiting:
        return None
    return last - waiting


def record_status(db: Database, update: StatusUpdate) -> None:
    """Upsert the gate's row: online/offline ``since`` changes only when the state does;
    ``last_seen`` moves only on a live message from the gate itself (not a retained copy
    replayed on subscribe, and not the broker's last will). A status that says how far
    the gate has sent (``sent_upto``) raises ``seq_marks.reported``, so the sweeper sees
    a hole at the newest seqs (lost after a broker's PUBACK) without a later event."""
    sent = sent_upto(update.body)
    if sent is not None:
        db.execute("INSERT INTO seq_marks (site, gate, upto, reported) VALUES (?, ?, 0, ?) "
                   "ON CONFLICT (site, gate) DO UPDATE SET reported = excluded.reported "
                   "WHERE seq_marks.reported < excluded.reported",
                   (update.site, update.gate, sent))
    rows = db.query("SELECT online, since, last_seen FROM gates WHERE site = ? AND gate = ?",
                    (update.site, update.gate))
    online = bool(update.body["online"])
    fresh = online and not update.retained
    body = dict(update.body)
    body["received_at"] = update.received_at
    text = json.dumps(body, separators=(",", ":"), default=str)
    if not rows:
        db.execute("INSERT INTO gates (site, gate, online, since, last_seen, status) "
                   "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (site, gate) DO NOTHING",
                   (update.site, update.gate, online, update.received_at,
                    update.received_at, text))
        _history(db, update, online)
        return
    was_online, since, last_seen = bool(rows[0][0]), rows[0][1], rows[0][2]
    if was_online != online:
        since = update.received_at
        _history(db, update, online)
    if fresh:
        last_seen = max(float(last_seen or 0), update.received_at)
    db.execute("UPDATE gates SET online = ?, since = ?, last_seen = ?, status = ? "
               "WHERE site = ? AND gate = ?",
               (online, since, last_seen, text, update.site, update.gate))


def _history(db: Database, update: StatusUpdate, online: bool) -> None:
    """An online/offline change, for the console's gate page."""
    reason = update.body.get("reason")
    db.execute("INSERT INTO gate_history (site, gate, at, online, detail) VALUES (?, ?, ?, ?, ?)",
               (update.site, update.gate, update.received_at, online,
                str(reason)[:200] if reason else None))
