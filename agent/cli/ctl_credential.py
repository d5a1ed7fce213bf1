"""``gatectl credential issue``, ``gatectl holder new`` and ``gatectl present``.

What the centre hands a courier (a signed credential, optionally bound to the phone's
key) and what the courier app shows at the gate (a live presentation), as QR text on
stdout and optionally a PNG.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import segno

from agent.cli.common import EXIT_OK, existing_file
from agent.core.errors import UsageError
from agent.core.timefmt import parse_duration, parse_instant
from agent.protocol.credential import issue_credential
from agent.protocol.keys import load_public_key, load_signing_key, write_keypair
from agent.protocol.presentation import present

# 8 px per module (>= 4 needed by camera decoders) and the standard 4-module quiet zone.
QR_SCALE = 8
QR_BORDER = 4


def save_qr_png(text: str, path: Path) -> int:
    """Render ``text`` at error correction M as a PNG; return the QR version."""
    code = segno.make(text, error="m", boost_error=False, micro=False)
    try:
        code.save(str(path), kind="png", scale=QR_SCALE, border=QR_BORDER)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    return int(code.version)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    credential = subparsers.add_parser("credential", help="issue courier credentials")
    actions = credential.add_subparsers(dest="credential_command", metavar="ACTION", required=True)
    issue = actions.add_parser(
        "issue",
        help="sign a credential and print its QR text",
        description="Sign a courier credential with an issuer key (its kid is the file's stem) "
        "and print the QR text. Valid from --not-before (default now) for --ttl.",
    )
    issue.add_argument("--key", required=True, type=existing_file, metavar="FILE",
                       help="issuer private key (KID.key from gatectl keys new)")
    issue.add_argument("--sub", required=True, metavar="ID", help="courier id")
    issue.add_argument("--scope", required=True, action="append", metavar="PATTERN",
                       help="SITE (every gate of a site) or SITE/GATE; repeat for more")
    issue.add_argument("--ttl", default="12h", help="validity, e.g. 12h, 7d (default 12h)")
    issue.add_argument("--not-before", metavar="ISO8601", help="start of validity (default now)")
    issue.add_argument("--holder-pub", type=existing_file, metavar="FILE",
                       help="the courier phone's public key: the gate then wants a live code")
    issue.add_argument("--qr", type=Path, metavar="PNG", help="also write a scannable PNG")
    issue.set_defaults(func=_issue)

    holder = subparsers.add_parser("holder", help="courier phone keys (for tests and demos)")
    holder_actions = holder.add_subparsers(dest="holder_command", metavar="ACTION", required=True)
    new = holder_actions.add_parser("new", help="write DIR/holder.key and DIR/holder.pub")
    new.add_argument("--out", required=True, type=Path, metavar="DIR")
    new.set_defaults(func=_holder_new)

    show = subparsers.add_parser(
        "present",
        help="make a live presentation as the courier app shows it",
        description="Sign {credential, time, nonce} with the phone's key and print the QR text.",
    )
    show.add_argument("--credential", required=True, metavar="TEXT", help="QM1:... credential")
    show.add_argument("--holder-key", required=True, type=existing_file, metavar="FILE")
    show.add_argument("--at", metavar="ISO8601", help="presentation time (default now)")
    show.add_argument("--qr", type=Path, metavar="PNG", help="also write a scannable PNG")
    show.set_defaults(func=_present)


def _issue(args: argparse.Namespace) -> int:
    key = load_signing_key(args.key)
    now = time.time()
    text = issue_credential(
        key,
        kid=args.key.stem,
        sub=args.sub,
        scope=args.scope,
        not_before=parse_instant(args.not_before, require_zone=True) if args.not_before else now,
        ttl_s=parse_duration(args.ttl, require_unit=True),
        now=now,
        holder_pub=load_public_key(args.holder_pub) if args.holder_pub else None,
    )
    if args.qr:
        save_qr_png(text, args.qr)
    print(text)
    return EXIT_OK


def _holder_new(args: argparse.Namespace) -> int:
    private_path, public_path = write_keypair(args.out, "holder")
    print(private_path)
    print(public_path)
    return EXIT_OK


def _present(args: argparse.Namespace) -> int:
    key = load_signing_key(args.holder_key)
    at = parse_instant(args.at, require_zone=True) if args.at else time.time()
    text = present(args.credential.strip(), key, at=at)
    if args.qr:
        save_qr_png(text, args.qr)
    print(text)
    return EXIT_OK
