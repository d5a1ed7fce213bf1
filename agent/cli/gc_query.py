"""``gate-centre entries`` and ``gate-centre gates``: what staff ask the store."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from typing import Any

from agent.centre.store import queries
from agent.cli.common import EXIT_NO, EXIT_OK
from agent.cli.gc_common import add_config, config, open_store
from agent.core.errors import UsageError
from agent.core.output import emit_json
from agent.core.timefmt import parse_instant

CSV_FIELDS = ["received_at", "ts", "site", "gate", "seq", "id", "kind", "granted", "reason",
              "sub", "cti", "method", "door"]


def _instant(text: str) -> float:
    try:
        return parse_instant(text, require_zone=True)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number of entries")
    return int(text)


def register(sub: Any) -> None:
    p = sub.add_parser("entries", help="stored entry-log events, oldest first")
    add_config(p)
    p.add_argument("--site")
    p.add_argument("--gate")
    p.add_argument("--sub", help="courier id")
    p.add_argument("--since", type=_instant, metavar="ISO8601", help="event time from")
    p.add_argument("--until", type=_instant, metavar="ISO8601", help="event time before")
    p.add_argument("--reason", help="reason code, e.g. revoked")
    p.add_argument("--limit", type=_count, metavar="N", help="at most N entries (the oldest)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object per line")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header line")
    p.set_defaults(func=cmd_entries)
    g = sub.add_parser("gates", help="every gate's state, problems first")
    add_config(g)
    g.add_argument("--problems", action="store_true",
                   help="only gates offline, stale, with holes, losses, conflicts or alarms")
    g.add_argument("--json", action="store_true", help="one JSON object per line")
    g.set_defaults(func=cmd_gates)


def cmd_entries(args: argparse.Namespace) -> int:
    db = open_store(config(args))
    count = 0
    try:
        rows = queries.entries(db, site=args.site, gate=args.gate, sub=args.sub,
                               since=args.since, until=args.until, reason=args.reason,
                               limit=args.limit)
        writer = csv.DictWriter(sys.stdout, CSV_FIELDS, extrasaction="ignore") \
            if args.csv else None
        if writer is not None:
            writer.writeheader()
        for row in rows:
            count += 1
            if args.json:
                emit_json(row)
            elif writer is not None:
                writer.writerow(row)
            else:
                verdict = "GRANTED" if row.get("granted") else (row.get("kind") or "")
                print(f"{row.get('ts')}  {row.get('site')}/{row.get('gate')}  "
                      f"#{row.get('seq')}  {verdict:8} {row.get('reason') or '':18} "
                      f"{row.get('sub') or '-'}")
    finally:
        db.close()
    if count == 0 and not args.json and not args.csv:
        sys.stderr.write("gate-centre: no entries match\n")
    return EXIT_OK if count else EXIT_NO


def cmd_gates(args: argparse.Namespace) -> int:
    db = open_store(config(args))
    try:
        rows = queries.gates(db, time.time(), problems_only=args.problems)
    finally:
        db.close()
    for row in rows:
        if args.json:
            emit_json(row)
        else:
            state = "online" if row["online"] else "OFFLINE"
            holes = ",".join(f"{a}-{b}" for a, b in row["holes"]) or "-"
            print(f"{row['site']}/{row['gate']:14} {state:8} since {row['since'] or '-':24} "
                  f"seen {row['last_seen'] or '-':24} list v{row['revocations_version']} "
                  f"backlog {row['backlog']} holes {holes} lost {len(row['lost'])} "
                  f"{' '.join(row['problems'])}")
    if args.problems and not rows and not args.json:
        print("no gate has a problem")
    return EXIT_OK
