"""The console's own rows in the centre's store: staff accounts, the audit log, commands
sent from the console with the gates' results, and each gate's online/offline changes.

Plain SQL on ``agent.centre.store.db.Database`` (migration 2 of the store's schema), no
web framework, so ``gate-centre user ...`` and the ingest service use it as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from agent.centre.store.db import Database
from agent.core.errors import UsageError
from agent.core.timefmt import format_instant

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
NAME_MAX = 64


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    hash: str
    disabled: bool
    changed_at: float

    def may(self, needed: Role) -> bool:
        """Roles are ordered: an admin may do what an operator may, and so on."""
        return ROLES.index(self.role) >= ROLES.index(needed)


def check_name(name: str) -> str:
    """A staff name: 1-64 printable characters without spaces; UsageError otherwise."""
    if not 1 <= len(name) <= NAME_MAX or not name.isprintable() or any(c.isspace() for c in name):
        raise UsageError(f"user name {name!r} must be 1-{NAME_MAX} printable characters "
                         "without spaces")
    return name


def get_user(db: Database, name: str) -> User | None:
    rows = db.query("SELECT name, role, hash, disabled, changed_at FROM console_users "
                    "WHERE name = ?", (name,))
    if not rows:
        return None
    n, role, hashed, disabled, changed = rows[0]
    return User(n, role, hashed, bool(disabled), float(changed))


def add_user(db: Database, name: str, role: Role, hashed: str, now: float) -> None:
    with db.transaction():
        if get_user(db, name) is not None:
            raise UsageError(f"user {name!r} exists already: use `gate-centre user passwd "
                             f"{name}` to set a new password")
        db.execute("INSERT INTO console_users (name, role, hash, disabled, created_at, "
                   "changed_at) VALUES (?, ?, ?, ?, ?, ?)",
                   (name, role, hashed, False, now, now))


def set_password(db: Database, name: str, hashed: str, now: float) -> None:
    """New hash; ``changed_at`` moves, which ends the user's open sessions."""
    with db.transaction():
        if not db.execute("UPDATE console_users SET hash = ?, disabled = ?, changed_at = ? "
                          "WHERE name = ?", (hashed, False, now, name)):
            raise UsageError(f"no user {name!r}: add one with `gate-centre user add {name} "
                             "--role viewer|operator|admin`")


def disable_user(db: Database, name: str, now: float) -> None:
    with db.transaction():
        if not db.execute("UPDATE console_users SET disabled = ?, changed_at = ? WHERE name = ?",
                          (True, now, name)):
            raise UsageError(f"no user {name!r} (see the names with gate-centre user list)")


def list_users(db: Database) -> list[dict[str, Any]]:
    return [{"name": n, "role": r, "disabled": bool(d), "changed_at": format_instant(float(c))}
            for n, r, d, c in db.query("SELECT name, role, disabled, changed_at FROM "
                                       "console_users ORDER BY name")]


def audit(db: Database, *, who: str, action: str, target: str | None, ok: bool,
          detail: str = "", addr: str | None = None, now: float) -> None:
    """One audit row in its own transaction (a refused action is recorded too)."""
    with db.transaction():
        db.execute("INSERT INTO console_audit (at, who, action, target, ok, detail, addr) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (now, who[:NAME_MAX * 2], action, target, ok, detail[:1000], addr))


def recent_audit(db: Database, limit: int = 200) -> list[dict[str, Any]]:
    return [{"at": float(at), "who": w, "action": a, "target": t, "ok": bool(ok),
             "detail": d or "", "addr": addr or ""}
            for at, w, a, t, ok, d, addr in db.query(
                "SELECT at, who, action, target, ok, detail, addr FROM console_audit "
                "ORDER BY n DESC LIMIT ?", (int(limit),))]


def record_command(db: Database, *, cmd_id: str, site: str, gate: str, action: str,
                   args: dict[str, Any], who: str, published: bool, now: float) -> None:
    with db.transaction():
        db.execute("INSERT INTO console_commands (id, site, gate, action, args, who, sent_at, "
                   "published) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (cmd_id, site, gate, action, json.dumps(args, separators=(",", ":")), who,
                    now, published))


def record_result(db: Database, site: str, gate: str, cmd_id: str, ok: bool, reason: str,
                  detail: str, now: float) -> bool:
    """A gate's ``cmd/result`` for a console command; False when it was not one of ours."""
    with db.transaction():
        return bool(db.execute(
            "UPDATE console_commands SET result_ok = ?, result_reason = ?, result_detail = ?, "
            "result_at = ? WHERE id = ? AND site = ? AND gate = ?",
            (ok, reason[:200], detail[:500], now, cmd_id, site, gate)))


def commands_for(db: Database, site: str, gate: str, limit: int = 50) -> list[dict[str, Any]]:
    rows = db.query("SELECT id, action, args, who, sent_at, published, result_ok, "
                    "result_reason, result_detail, result_at FROM console_commands "
                    "WHERE site = ? AND gate = ? ORDER BY sent_at DESC LIMIT ?",
                    (site, gate, int(limit)))
    return [{"id": i, "action": a, "args": json.loads(args), "who": w, "sent_at": float(s),
             "published": bool(p), "result_ok": None if ok is None else bool(ok),
             "result_reason": r, "result_detail": d,
             "result_at": None if at is None else float(at)}
            for i, a, args, w, s, p, ok, r, d, at in rows]


def gate_history(db: Database, site: str, gate: str, limit: int = 50) -> list[dict[str, Any]]:
    return [{"at": float(at), "online": bool(o), "detail": d or ""}
            for at, o, d in db.query("SELECT at, online, detail FROM gate_history WHERE "
                                     "site = ? AND gate = ? ORDER BY at DESC LIMIT ?",
                                     (site, gate, int(limit)))]
