"""gatectl commands that talk to the broker: ``open``, ``mode``, ``watch``, and the
``publish`` action of ``revocations`` (added to that command's action table).

Exit codes: 0 done (command accepted, list acknowledged by the broker), 1 the answer is
"no" (command refused or no answer in time, broker unreachable or refusing us), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TypeAlias

import cbor2

from agent.centre.session import CtlSession, await_results
from agent.centre.watch import describe_message, follow
from agent.cli.common import EXIT_NO, EXIT_OK, existing_file
from agent.core.bounds import MAX_DELTA_BYTES, MQTT_LIST_BYTES
from agent.core.errors import GateError, KeyFileError, RevocationListError, UsageError
from agent.core.output import emit_json
from agent.core.timefmt import format_instant, parse_duration
from agent.protocol import cbor_strict, cose
from agent.protocol.command import make_command, sign_command
from agent.protocol.keys import load_ops_keyring, load_signing_key
from agent.protocol.revocation import DOC_TYPE, MAX_LIST_BYTES, parse_revocation_list
from agent.protocol.timemsg import sign_time
from agent.sync.broker import BrokerSettings, broker_settings
from agent.sync.topics import (
    REVOCATIONS_DELTA,
    REVOCATIONS_FULL,
    ROOT,
    TIME,
    GateTopics,
    watch_filters,
)

Subparsers: TypeAlias = "argparse._SubParsersAction[Any]"


def register(subparsers: Subparsers) -> None:
    opener = subparsers.add_parser(
        "open", help="open a gate's door once (signed command)",
        description="Publish a signed 'open' command and wait for the gate's result.")
    opener.add_argument("target", metavar="SITE/GATE")
    _command_options(opener)
    opener.set_defaults(func=_open)

    mode = subparsers.add_parser(
        "mode", help="set a gate's mode: normal, lockdown or free (signed command)",
        description="Publish a signed 'mode' command; SITE/* addresses every gate of a site.")
    mode.add_argument("target", metavar="SITE/GATE")
    mode.add_argument("mode", choices=("normal", "lockdown", "free"))
    mode.add_argument("--for", dest="duration", metavar="DURATION",
                      help="return to normal after this long (e.g. 10m)")
    _command_options(mode)
    mode.set_defaults(func=_mode)

    resync = subparsers.add_parser(
        "resync", help="ask a gate to fetch the full revocation list again (signed command)",
        description="Publish a signed 'resync' command and wait for the gate's result.")
    resync.add_argument("target", metavar="SITE/GATE")
    _command_options(resync)
    resync.set_defaults(func=_resync)

    resend = subparsers.add_parser(
        "resend", help="have a gate send a range of its entry log again (signed command)",
        description="Publish a signed 'resend' command: the gate queues events FROM..TO "
                    "(per-gate seq numbers, inclusive) from its local entry log again, e.g. "
                    "after the centre found a gap. Re-sent events keep their id and seq.")
    resend.add_argument("target", metavar="SITE/GATE")
    resend.add_argument("--from", dest="seq_from", type=int, required=True, metavar="SEQ")
    resend.add_argument("--to", dest="seq_to", type=int, required=True, metavar="SEQ")
    _command_options(resend)
    resend.set_defaults(func=_resend)

    timecmd = subparsers.add_parser(
        "time", help="signed time for gates without NTP (a centre without gate-centre)",
        description="gatectl time publish: sign the centre's clock with an ops key and "
        "publish it once on gate/v1/time (gate-centre does this every minute by itself).")
    time_actions = timecmd.add_subparsers(dest="action", metavar="ACTION", required=True)
    publish_time = time_actions.add_parser(
        "publish", help="publish one signed time message now",
        description="Run it from cron or a timer where no gate-centre runs; the centre "
        "host's own clock must be NTP-synchronised, since gates will believe it.")
    publish_time.add_argument("--key", required=True, type=existing_file, metavar="FILE",
                              help="ops private key (its kid is the file's stem)")
    add_broker_options(publish_time, tls_key_is_key=False)
    publish_time.set_defaults(func=_publish_time)

    watch = subparsers.add_parser(
        "watch", help="print live events, gate status and command results",
        description="Subscribe to gates' events, retained status and command results.")
    watch.add_argument("target", nargs="?", metavar="SITE[/GATE]")
    watch.add_argument("--json", action="store_true", help="one JSON object per line")
    watch.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    watch.add_argument("--duration", metavar="S", help="stop after this long (e.g. 30s)")
    add_broker_options(watch)
    watch.set_defaults(func=_watch)


def add_publish(actions: Subparsers) -> None:
    """``gatectl revocations publish FILE --broker URL``: retained full, plain delta."""
    publish = actions.add_parser(
        "publish", help="publish a signed revocation list to the broker",
        description="Full lists are published retained on gate/v1/revocations/full (every "
        "gate gets the latest on connect); deltas on gate/v1/revocations/delta.")
    publish.add_argument("file", type=existing_file, metavar="FILE")
    publish.add_argument("--trust", metavar="DIR", type=Path,
                         help="the gates' ops keys (<kid>.pub): refuse a list they would refuse")
    add_broker_options(publish)
    publish.set_defaults(func=_publish_revocations)


def add_broker_options(parser: argparse.ArgumentParser, *, tls_key_is_key: bool = True) -> None:
    """Broker URL and TLS options; ``--key`` is the TLS key unless it is the ops key."""
    parser.add_argument("--broker", required=True, metavar="URL",
                        help="mqtts://HOST[:PORT] (TLS) or mqtt://HOST[:PORT] (tests)")
    parser.add_argument("--ca", type=existing_file, metavar="FILE", help="CA certificate (PEM)")
    parser.add_argument("--cert", type=existing_file, metavar="FILE",
                        help="client certificate (PEM)")
    flags = ("--key", "--tls-key") if tls_key_is_key else ("--tls-key",)
    parser.add_argument(*flags, dest="tls_key", type=existing_file,
                        metavar="FILE", help="client certificate's private key (PEM)")
    parser.add_argument("--username", help="MQTT user name")
    parser.add_argument("--password-file", type=existing_file, metavar="FILE",
                        help="file whose first line is the MQTT password")


def _command_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", required=True, type=existing_file, metavar="FILE",
                        help="ops private key (its kid is the file's stem)")
    parser.add_argument("--wait", type=float, default=10.0, metavar="S",
                        help="seconds to wait for the gate's result (0: do not wait)")
    parser.add_argument("--ttl", default="60s", metavar="DURATION",
                        help="the command expires after this long (default 60s)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_broker_options(parser, tls_key_is_key=False)


def settings_from_args(args: argparse.Namespace) -> BrokerSettings:
    return broker_settings(
        args.broker, ca_file=args.ca, cert_file=args.cert, key_file=args.tls_key,
        username=args.username, password_file=args.password_file,
    )


def _open(args: argparse.Namespace) -> int:
    return _send_command(args, "open")


def _mode(args: argparse.Namespace) -> int:
    duration = int(parse_duration(args.duration, require_unit=True)) if args.duration else None
    return _send_command(args, "mode", mode=args.mode, duration_s=duration)


def _resync(args: argparse.Namespace) -> int:
    return _send_command(args, "resync")


def _resend(args: argparse.Namespace) -> int:
    return _send_command(args, "resend", seqs=(args.seq_from, args.seq_to))


def _send_command(args: argparse.Namespace, action: str, **fields: Any) -> int:
    key_path = Path(args.key)
    key = load_signing_key(key_path)
    try:
        cmd = make_command(action, args.target, now=time.time(),
                           ttl_s=max(1, int(parse_duration(args.ttl, require_unit=True))),
                           **fields)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    site_only = cmd.gate == "*"
    topics = GateTopics(cmd.site, cmd.gate)
    topic = topics.site_cmd if site_only else topics.cmd
    result_filter = f"{ROOT}/{cmd.site}/+/cmd/result" if site_only else topics.cmd_result
    with CtlSession(settings_from_args(args)) as session:
        if args.wait > 0:
            session.link.subscribe([result_filter])
        session.publish(topic, sign_command(cmd, key, key_path.stem))
        if args.wait <= 0:
            _report(args, {"id": cmd.id, "ok": None, "reason": "sent", "target": cmd.target})
            return EXIT_OK
        # One gate answers once; a site-wide command waits the whole --wait for every gate.
        results = await_results(session, cmd.id, args.wait, first_only=not site_only)
    if not results:
        _report(args, {"id": cmd.id, "ok": False, "reason": "timeout", "target": cmd.target,
                       "detail": f"no result from {'any gate' if site_only else 'the gate'} "
                                 f"within {args.wait:g} s (is it online? see gatectl watch)"})
        return EXIT_NO
    for result in results:
        _report(args, result)
    return EXIT_OK if all(r.get("ok") is True for r in results) else EXIT_NO


def _report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json:
        emit_json(result)
        return
    where = result.get("target") or f"{result.get('site')}/{result.get('gate')}"
    if result.get("ok") is True:
        sys.stdout.write(f"accepted by {where} (command {result.get('id')})\n")
    elif result.get("ok") is None:
        sys.stdout.write(f"sent to {where} (command {result.get('id')})\n")
    else:
        detail = f": {result['detail']}" if result.get("detail") else ""
        verb = "no answer from" if result.get("reason") == "timeout" else "refused by"
        sys.stderr.write(f"gatectl: {verb} {where}: {result.get('reason')}{detail}\n")


def _publish_revocations(args: argparse.Namespace) -> int:
    data = Path(args.file).read_bytes()
    kind, version = _peek_revocation_list(data, args.file)
    cap = MQTT_LIST_BYTES if kind == "full" else MAX_DELTA_BYTES
    if len(data) > cap:
        raise UsageError(
            f"{args.file} is {len(data)} bytes: gates take a {kind} list of at most {cap} "
            "over MQTT (their broker drops a bigger one for them); apply it at each gate "
            f"with gate-agent revocations apply {Path(args.file).name}"
            + (" instead" if kind == "full" else ", or publish a full list"))
    if args.trust is not None:
        _check_against_trust(data, args.file, args.trust)
    topic = REVOCATIONS_FULL if kind == "full" else REVOCATIONS_DELTA
    with CtlSession(settings_from_args(args)) as session:
        session.publish(topic, data, retain=kind == "full", timeout=60.0)
    sys.stdout.write(f"published {kind} revocation list version {version} on {topic}"
                     f"{' (retained)' if kind == 'full' else ''}\n")
    return EXIT_OK


def _publish_time(args: argparse.Namespace) -> int:
    key_path = Path(args.key)
    key = load_signing_key(key_path)
    now = time.time()
    with CtlSession(settings_from_args(args)) as session:
        session.publish(TIME, sign_time(now, key, key_path.stem))
    sys.stdout.write(f"published signed time {format_instant(now)} on {TIME} "
                     f"(ops key {key_path.stem})\n")
    return EXIT_OK


def _check_against_trust(data: bytes, name: str, trust: Path) -> None:
    """Refuse (exit 1) a list the gates would refuse: signed by a key they do not trust."""
    try:
        keyring = load_ops_keyring(trust)
    except KeyFileError as exc:
        raise UsageError(f"--trust {trust}: {exc}") from None
    try:
        parse_revocation_list(data, keyring, time.time())
    except RevocationListError as exc:
        raise GateError(f"{name} would be refused by the gates trusting {trust}: {exc}; "
                           "sign it with one of those ops keys") from None


def _peek_revocation_list(data: bytes, name: str) -> tuple[str, int]:
    """Kind and version of a signed list (not verified: the gates do that)."""
    try:
        envelope = cose.from_decoded(
            cbor_strict.loads_strict(data, max_bytes=MAX_LIST_BYTES, max_depth=1))
        if envelope.typ != DOC_TYPE:
            raise ValueError(f"document type {envelope.typ!r}")
        body = cbor2.loads(envelope.payload)
        kind, version = body["k"], body["v"]
        if kind not in ("full", "delta") or not isinstance(version, int):
            raise ValueError("no kind/version")
    except (GateError, ValueError, KeyError, TypeError, cbor2.CBORDecodeError) as exc:
        raise UsageError(f"{name} is not a signed revocation list ({exc}): make one with "
                         "gatectl revocations full|delta") from None
    return kind, version


def _watch(args: argparse.Namespace) -> int:
    duration = parse_duration(args.duration) if args.duration else None
    try:
        filters = watch_filters(args.target)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    deadline = time.monotonic() + duration if duration is not None else None
    shown = 0

    def show(topic: str, payload: bytes, retained: bool) -> None:
        nonlocal shown
        record, line = describe_message(topic, payload, retained)
        if args.json:
            emit_json(record)
        else:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        shown += 1

    def changed(what: str) -> None:
        sys.stderr.write(f"gatectl watch: {format_instant(time.time())} {what}\n")
        sys.stderr.flush()

    def done() -> bool:
        return ((args.count is not None and shown >= args.count)
                or (deadline is not None and time.monotonic() >= deadline))

    follow(settings_from_args(args), filters, show, changed, done)
    return EXIT_OK


