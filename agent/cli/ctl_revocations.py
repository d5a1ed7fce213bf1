"""``gatectl revocations ...``: make signed revocation lists for the gates.

``full`` writes a complete snapshot, ``delta`` the changes from ``--base`` to
``--version``. Entries come from ``--cti``, ``--sub ID[@ISO8601]`` and ``--from FILE``
(one a line: ``cti:ID``, ``sub:ID`` or ``sub:ID@ISO8601``; ``#`` starts a comment).

Actions are a table (name -> function adding its parser) so further actions, such as
``publish``, are added with one entry in ``ACTIONS``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeAlias

from agent.cli.common import EXIT_OK, existing_file
from agent.cli.ctl_broker import add_publish
from agent.core.errors import UsageError
from agent.core.timefmt import parse_instant
from agent.protocol.keys import load_signing_key
from agent.protocol.revocation import (
    MAX_SUB,
    RevocationEntry,
    RevocationList,
    sign_revocation_list,
)
from agent.store.files import atomic_write

Subparsers: TypeAlias = "argparse._SubParsersAction[Any]"


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("revocations", help="make and publish revocation lists")
    actions = parser.add_subparsers(dest="revocations_command", metavar="ACTION", required=True)
    for add_action in ACTIONS.values():
        add_action(actions)


def _add_full(actions: Subparsers) -> None:
    full = actions.add_parser(
        "full",
        help="write a signed full revocation list",
        description="A complete list: the gate replaces everything it had with it.",
    )
    _common_options(full)
    full.add_argument("--version", required=True, type=int, metavar="N", help="list version")
    full.set_defaults(func=_full)


def _add_delta(actions: Subparsers) -> None:
    delta = actions.add_parser(
        "delta",
        help="write a signed delta from --base to --version",
        description="Changes since version BASE; a gate applies it only on exactly BASE.",
    )
    _common_options(delta)
    delta.add_argument("--base", required=True, type=int, metavar="N", help="version it follows")
    delta.add_argument("--version", required=True, type=int, metavar="M", help="new version")
    delta.add_argument("--remove-cti", action="append", default=[], metavar="ID",
                       help="lift a credential's revocation again")
    delta.add_argument("--remove-sub", action="append", default=[], metavar="ID[@ISO8601]",
                       help="lift a courier's revocation again (same form as when added)")
    delta.set_defaults(func=_delta)


ACTIONS: dict[str, Callable[[Subparsers], None]] = {
    "full": _add_full, "delta": _add_delta, "publish": add_publish
}


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", required=True, type=existing_file, metavar="FILE",
                        help="ops private key (its kid is the file's stem)")
    parser.add_argument("--cti", action="append", default=[], metavar="ID",
                        help="revoke one credential (hex id, as verify prints it)")
    parser.add_argument("--sub", action="append", default=[], metavar="ID[@ISO8601]",
                        help="revoke a courier's credentials (issued before the time, if given)")
    parser.add_argument("--from", dest="from_file", type=existing_file, metavar="FILE",
                        help="entries, one a line: cti:ID, sub:ID or sub:ID@ISO8601")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE", help="file to write")


def _full(args: argparse.Namespace) -> int:
    lst = RevocationList("full", args.version, None, int(time.time()), _entries(args))
    return _write(lst, args)


def _delta(args: argparse.Namespace) -> int:
    if not 0 <= args.base < args.version:
        raise UsageError(f"--base {args.base} must be below --version {args.version}")
    removed = tuple(
        [cti_entry(v) for v in args.remove_cti] + [sub_entry(v) for v in args.remove_sub]
    )
    lst = RevocationList("delta", args.version, args.base, int(time.time()), _entries(args),
                         removed)
    return _write(lst, args)


def _write(lst: RevocationList, args: argparse.Namespace) -> int:
    if lst.version < 1:
        raise UsageError(f"--version must be 1 or more, got {lst.version}")
    try:
        data = sign_revocation_list(lst, load_signing_key(args.key), args.key.stem)
    except ValueError as exc:  # an entry the gates would refuse: say which, sign nothing
        raise UsageError(f"cannot sign this list: {exc}") from None
    atomic_write(args.out, data)
    print(f"{args.out}: {lst.kind} list version {lst.version}, "
          f"{len(lst.add)} added, {len(lst.remove)} removed, {len(data)} bytes")
    return EXIT_OK


def _entries(args: argparse.Namespace) -> tuple[RevocationEntry, ...]:
    entries = [cti_entry(v) for v in args.cti] + [sub_entry(v) for v in args.sub]
    if args.from_file:
        entries.extend(read_entries(args.from_file))
    return tuple(dict.fromkeys(entries))


def cti_entry(text: str) -> RevocationEntry:
    value = text.strip().lower()
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if not 1 <= len(raw) <= 32:
        raise UsageError(f"cti {text!r} is not a hex credential id (as gate-agent verify prints)")
    return RevocationEntry("cti", value, None)


def sub_entry(text: str) -> RevocationEntry:
    sub, _, when = text.strip().partition("@")
    sub = sub.strip()
    if not 1 <= len(sub) <= MAX_SUB:
        raise UsageError(
            f"subject entry {text!r} needs a courier id of 1-{MAX_SUB} characters: "
            "use ID or ID@ISO8601"
        )
    before = int(parse_instant(when, require_zone=True)) if when else None
    return RevocationEntry("sub", sub, before)


def read_entries(path: Path) -> Iterable[RevocationEntry]:
    """Entries of a ``--from`` file; UsageError naming the first bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    out: list[RevocationEntry] = []
    for number, raw_line in enumerate(lines, 1):
        line = raw_line.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, value = line.partition(":")
        try:
            if kind == "cti":
                out.append(cti_entry(value))
            elif kind == "sub":
                out.append(sub_entry(value))
            else:
                raise UsageError("expected cti:ID, sub:ID or sub:ID@ISO8601")
        except UsageError as exc:
            raise UsageError(f"{path} line {number}: {exc}") from None
    return out
