"""``gate-centre revoke``, ``unrevoke`` and ``revocations``: the list the centre owns.

Nobody types a version number: each change bumps it, is signed as a delta plus a
compacted full list, checked against the gates' ops trust, stored with who, when and
why, and published (delta, then the retained full list). When the broker is down the
change is kept and the running service publishes it on its next sweep.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from typing import Any, Literal

from agent.centre import ops
from agent.centre.store import queries, revocations
from agent.cli.common import EXIT_NO, EXIT_OK
from agent.cli.gc_common import add_config, config, open_store
from agent.core.errors import UsageError
from agent.core.output import emit_json
from agent.core.timefmt import parse_instant
from agent.protocol.revocation import RevocationEntry


def register(sub: Any) -> None:
    for name, text in (("revoke", "revoke a credential or a courier's credentials"),
                       ("unrevoke", "lift a revocation")):
        p = sub.add_parser(name, help=text)
        add_config(p)
        what = p.add_mutually_exclusive_group(required=True)
        what.add_argument("--sub", metavar="ID", help="a courier id")
        what.add_argument("--cti", metavar="HEX", help="one credential id (hex)")
        if name == "revoke":
            p.add_argument("--before", metavar="ISO8601",
                           help="with --sub: only credentials issued before this time")
        p.add_argument("--reason", metavar="TEXT", help="why (kept in the history)")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_change, action=name)
    r = sub.add_parser("revocations", help="list version, entries and history")
    add_config(r)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_status)


def _entry(args: argparse.Namespace) -> RevocationEntry:
    before = getattr(args, "before", None)
    if args.cti is not None:
        if before:
            raise UsageError("--before goes with --sub, not --cti")
        value = args.cti.strip().lower()
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise UsageError(f"--cti {args.cti!r} is not hex: give the credential id as "
                             "gate-agent verify prints it") from None
        if not 1 <= len(raw) <= 32:
            raise UsageError(f"--cti {args.cti!r} is not 1-32 bytes of hex")
        return RevocationEntry("cti", value)
    sub = args.sub.strip()
    if not 1 <= len(sub) <= 64:
        raise UsageError("--sub must be 1-64 characters")
    cutoff = int(parse_instant(before, require_zone=True)) if before else None
    return RevocationEntry("sub", sub, cutoff)


def cmd_change(args: argparse.Namespace) -> int:
    action: Literal["revoke", "unrevoke"] = args.action
    entry = _entry(args)
    cfg = config(args)
    key, kid = ops.ops_key(cfg)
    trust = ops.ops_trust(cfg)
    db = open_store(cfg)
    try:
        now = time.time()
        change = revocations.change(db, action, entry, reason=args.reason, who=_who(),
                                    key=key, kid=kid, trust=trust, now=now)
        problem = ops.publish_pending(cfg, db, now)
    finally:
        db.close()
    result = {"action": action, "entry": revocations.entry_text(entry),
              "version": change.version, "entries": change.entries,
              "published": problem is None}
    if args.json:
        emit_json(result)
    else:
        print(f"{action}d {result['entry']}: list version {change.version}, "
              f"{change.entries} entries")
    if problem is not None:
        sys.stderr.write(f"gate-centre: version {change.version} is stored but not published "
                         f"({problem}); the running gate-centre publishes it on its next "
                         "sweep, or run this command again once the broker is back\n")
        return EXIT_NO
    return EXIT_OK


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def cmd_status(args: argparse.Namespace) -> int:
    db = open_store(config(args))
    try:
        summary = queries.revocations(db)
    finally:
        db.close()
    if args.json:
        emit_json(summary)
        return EXIT_OK
    print(f"version {summary['version']}, {summary['entries']} entries, "
          f"published {summary['published_at'] or 'not yet'}")
    for h in summary["history"]:
        before = f" before {h['before']}" if h["before"] else ""
        print(f"  v{h['version']} {h['issued_at']} {h['who']}: {h['action']} "
              f"{h['kind']}:{h['value']}{before}"
              f"{' (' + h['reason'] + ')' if h['reason'] else ''}")
    return EXIT_OK
