"""``gate-centre user add|passwd|disable|list``: the console's staff accounts.

There is no default account and no default password: the first admin is made here.
The password is read from stdin when it is not a terminal (one line, for scripts),
else asked twice without echo. Each change is in the console's audit log.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from typing import Any

from agent.centre.store.db import Database
from agent.centre.web import records
from agent.cli.common import EXIT_OK
from agent.cli.gc_common import add_config, config, open_store
from agent.core.errors import UsageError
from agent.core.output import emit_json


def register(sub: Any) -> None:
    user = sub.add_parser("user", help="console staff accounts")
    acts = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = acts.add_parser("add", help="add an account (password from stdin or prompted)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=records.ROLES,
                     help="viewer: look only; operator: also revoke and command gates; "
                          "admin: also the audit log")
    add.set_defaults(func=cmd_add)
    passwd = acts.add_parser("passwd", help="set a new password (ends open sessions)")
    passwd.add_argument("name")
    passwd.set_defaults(func=cmd_passwd)
    disable = acts.add_parser("disable", help="disable an account (ends open sessions)")
    disable.add_argument("name")
    disable.set_defaults(func=cmd_disable)
    lst = acts.add_parser("list", help="list the accounts")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_list)
    for p in (add, passwd, disable, lst):
        add_config(p)


def read_password() -> str:
    """One line from stdin when piped; else asked twice on the terminal."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise UsageError("no password on stdin: pipe one line, e.g. "
                             "printf '%s\\n' \"$PW\" | gate-centre user add ...")
        return line
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise UsageError("the two passwords differ: nothing changed")
    return first


def hash_password(password: str) -> str:
    try:
        from agent.centre.web.auth import hash_password as argon2_hash
    except ImportError as exc:
        raise UsageError(f"console accounts need the console's packages ({exc.name} is "
                         "missing): pip install 'gate-agent[console]'") from None
    return argon2_hash(password)


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _audit(db: Database, action: str, name: str) -> None:
    records.audit(db, who=_who(), action=action, target=name, ok=True, now=time.time())


def cmd_add(args: argparse.Namespace) -> int:
    name = records.check_name(args.name)
    hashed = hash_password(read_password())
    db = open_store(config(args))
    try:
        records.add_user(db, name, args.role, hashed, time.time())
        _audit(db, f"user_add:{args.role}", name)
    finally:
        db.close()
    print(f"user {name} added with role {args.role}")
    return EXIT_OK


def cmd_passwd(args: argparse.Namespace) -> int:
    hashed = hash_password(read_password())
    db = open_store(config(args))
    try:
        records.set_password(db, args.name, hashed, time.time())
        _audit(db, "user_passwd", args.name)
    finally:
        db.close()
    print(f"user {args.name}: new password set; open sessions are ended")
    return EXIT_OK


def cmd_disable(args: argparse.Namespace) -> int:
    db = open_store(config(args))
    try:
        records.disable_user(db, args.name, time.time())
        _audit(db, "user_disable", args.name)
    finally:
        db.close()
    print(f"user {args.name} disabled; open sessions are ended")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    db = open_store(config(args))
    try:
        users = records.list_users(db)
    finally:
        db.close()
    for u in users:
        if args.json:
            emit_json(u)
        else:
            print(f"{u['name']}\t{u['role']}\t{'disabled' if u['disabled'] else 'active'}")
    return EXIT_OK
