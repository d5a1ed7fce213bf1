"""``gate-agent revocations apply|status``, ``gate-agent log``, ``gate-agent outbox status``.

The gate's local state as installers and centre staff see it. Status and log commands
open the state read-only (safe while the daemon runs, and they create no files);
``revocations apply`` installs a signed list carried on a USB stick, and refuses while
the daemon holds the state (send the list through the centre instead).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeAlias

from agent.cli.common import EXIT_OK, add_config_option, config_from_args
from agent.core.clock import SystemClock
from agent.core.config import Config
from agent.core.errors import ConfigError, KeyFileError, RevocationListError, UsageError
from agent.core.output import emit_json
from agent.core.timefmt import format_instant, parse_instant
from agent.gate.gatekeeper import list_status
from agent.protocol.keys import load_keyring
from agent.protocol.revstream import FILE_MAX_BYTES, FILE_MAX_ENTRIES, parse_compact_list
from agent.store.entries import Entry, OutboxStatus
from agent.store.entrylog import OUTBOX_FILE, EntryLog
from agent.store.meta import Meta
from agent.store.owner import become_state_owner
from agent.store.recovery import read_recoveries
from agent.store.revocations import RevocationStatus, RevocationStore

Subparsers: TypeAlias = "argparse._SubParsersAction[Any]"


def register(subparsers: Subparsers) -> None:
    _register_revocations(subparsers)
    _register_log(subparsers)
    _register_outbox(subparsers)


def _register_revocations(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "revocations", help="install a signed revocation list, or show the installed one"
    )
    actions = parser.add_subparsers(dest="revocations_command", metavar="ACTION", required=True)
    apply = actions.add_parser(
        "apply",
        help="verify and install a signed list file (full or delta)",
        description="Exit 0 when installed; 1 when refused (bad signature, older version, "
        "delta on another base): a refused list changes nothing. 2 when FILE is not a "
        "signed list at all.",
    )
    apply.add_argument("file", metavar="FILE", help="signed list from `gatectl revocations`")
    add_config_option(apply)
    apply.set_defaults(func=_apply)
    status = actions.add_parser("status", help="installed list version, entry count and age")
    add_config_option(status)
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(func=_revocations_status)


def _register_log(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "log", help="print the local entry log (sent and waiting entries)",
        description="Every recorded decision and event kept on the gate, oldest first.",
    )
    add_config_option(parser)
    parser.add_argument("--since", metavar="ISO8601", help="only entries at or after this time")
    parser.add_argument("--json", action="store_true", help="one JSON object per entry")
    parser.set_defaults(func=_log)


def _register_outbox(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("outbox", help="entries waiting for the centre")
    actions = parser.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="backlog, oldest waiting entry, disk used")
    add_config_option(status)
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(func=_outbox_status)


# ---- revocations ---------------------------------------------------------------------


def _apply(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        with Path(args.file).open("rb") as stream:  # a bigger file is refused unread
            data = stream.read(FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    if len(data) > FILE_MAX_BYTES:
        raise RevocationListError(
            f"{args.file} is over the {FILE_MAX_BYTES:,}-byte limit of a revocation list "
            "file: nothing installed; ask the centre for a compacted full list")
    _check_looks_like_a_list(data, args.file)
    try:
        keyring = load_keyring(config.trust.keys_dir, config.trust.ops_keys_dir)
    except KeyFileError as exc:
        raise ConfigError(f"trust: {exc}", str(config.path)) from None
    clock = SystemClock()
    # A file may hold a bigger list than the broker carries: the compact reader needs
    # ~16 bytes an id (docs/storage.md), so ten million fit a Pi Zero's memory.
    lst = parse_compact_list(data, keyring, clock.now(), max_bytes=FILE_MAX_BYTES,
                             max_entries=FILE_MAX_ENTRIES)
    del data  # the ids are copied out: the signed bytes are not needed any more
    become_state_owner(config.state.dir)
    state = config.state.dir
    with RevocationStore(state, clock=clock) as store:  # takes the writer lock first
        # The marks the daemon keeps: an install here raises them too.
        meta = Meta(state, clock=clock)
        entry_log = EntryLog(state, clock=clock, meta=meta)
        try:
            if entry_log.highwater is not None:
                store.use_highwater(entry_log.highwater)
            store.apply(lst)
        finally:
            entry_log.close()
            meta.close()
        print(
            f"installed revocation list version {lst.version} ({lst.kind}), "
            f"{store.entries} entries, issued {format_instant(lst.issued_at)}"
        )
    return EXIT_OK


def _check_looks_like_a_list(data: bytes, name: str) -> None:
    """A file that is plainly something else (a courier's QR text, a PNG) is the wrong
    argument (exit 2), said plainly; a signed list that fails its checks is refused (1)."""
    what = None
    if data.lstrip()[:4] in (b"QM1:", b"QP1:"):
        what = "a courier's QR code text"
    elif data[:1] not in (b"\x84", b"\xd2"):  # COSE_Sign1: a 4-array, tagged or not
        what = "not a signed revocation list"
    if what:
        raise UsageError(f"{name} is {what}: give the file written by "
                         "gatectl revocations full|delta --out FILE")


def _revocations_status(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    found = read_recoveries(config.state.dir)
    store = RevocationStore(config.state.dir, read_only=True,
                            min_version=found.revocations_mark())
    status = store.status()
    store.close()
    # What the daemon found and recovered from stays listed until cleared.
    recorded = [*found.of("revocations"), *found.of("state"), *found.unreadable]
    status = replace(status, problems=tuple(dict.fromkeys([*status.problems, *recorded])))
    max_age_s = config.policy.revocations_max_age_h * 3600.0
    stale = list_status(store, time.time(), config.policy.revocations_max_age_h).stale
    if args.json:
        emit_json({**status.to_json(), "stale": stale, "max_age_s": max_age_s})
    else:
        _print_revocations(status, stale)
    return EXIT_OK


def _print_revocations(status: RevocationStatus, stale: bool) -> None:
    if status.version is None:
        print("no revocation list installed: waiting for a full list from the centre "
              "(or install one with `gate-agent revocations apply FILE`)")
    else:
        assert status.issued_at is not None and status.age_s is not None
        print(
            f"version {status.version}, {status.entries} entries, issued "
            f"{format_instant(status.issued_at)} ({_age(status.age_s)} ago)"
            + (", STALE" if stale else "")
        )
    if status.state != "ok" and status.high_water is not None:
        print(f"UNKNOWN: this gate had version {status.high_water}; scans are denied "
              "(revocations_unknown) until the centre's full list is installed")
    for problem in status.problems:
        print(f"problem: {problem}")


# ---- entry log and outbox ------------------------------------------------------------


def _open_log(config: Config) -> EntryLog | None:
    if not (config.state.dir / OUTBOX_FILE).is_file():
        return None
    return EntryLog(
        config.state.dir,
        capacity=config.state.outbox_capacity,
        retention_days=config.state.retention_days,
        read_only=True,
    )


def _log(args: argparse.Namespace) -> int:
    since = parse_instant(args.since, require_zone=True) if args.since else None
    config = config_from_args(args)
    log = _open_log(config)
    if log is None:
        if not args.json:
            sys.stderr.write(f"no entries recorded yet in {config.state.dir}\n")
        return EXIT_OK
    with log:
        for entry in log.history(since):
            if args.json:
                emit_json({**entry.event, "sent": entry.acked_at is not None})
            else:
                sys.stdout.write(_log_line(entry) + "\n")
    return EXIT_OK


def _log_line(entry: Entry) -> str:
    event = entry.event
    kind = str(event.get("kind", "scan"))
    if "granted" in event:
        what = f"{'granted' if event['granted'] else 'denied':7} {event.get('reason', '-')}"
    else:
        what = f"{kind:7} {event.get('alarm') or event.get('reason') or ''}".rstrip()
    parts = [
        format_instant(entry.ts),
        f"#{entry.seq}",
        what,
        f"sub={event['sub']}" if event.get("sub") else "",
        f"via={event['method']}" if event.get("method") else "",
        f"door={event['door']}" if event.get("door") else "",
        "sent" if entry.acked_at is not None else "waiting",
    ]
    return "  ".join(p for p in parts if p)


def _outbox_status(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    log = _open_log(config)
    if log is None:
        status = OutboxStatus(0, None, None, 0, config.state.outbox_capacity, False, 0, 0)
    else:
        with log:
            status = log.status()
    found = read_recoveries(config.state.dir)
    status = replace(status, problems=tuple(dict.fromkeys([*status.problems,
                                                          *found.of("entry_log")])))
    if args.json:
        emit_json(status.to_json())
        return EXIT_OK
    oldest = "" if status.oldest_age_s is None else f", oldest {_age(status.oldest_age_s)} ago"
    print(
        f"backlog {status.backlog} entries{oldest}; {status.entries} kept, last seq "
        f"{status.last_seq}; {status.disk_bytes / 1_048_576:.1f} MB on disk; capacity "
        f"{status.capacity}" + (" (FULL: check the broker connection)" if status.full else "")
    )
    for first, last in status.lost:
        print(f"LOST: seq {first}-{last} (report them to the centre, then "
              "`gate-agent state clear`)")
    for problem in status.problems:
        print(f"problem: {problem}")
    return EXIT_OK


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
