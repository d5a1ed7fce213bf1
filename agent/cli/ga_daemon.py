"""``gate-agent run`` (the daemon), ``gate-agent demo`` (embedded default), ``gate-agent check``."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from agent.cli.common import EXIT_NO, EXIT_OK, EXIT_USAGE, add_config_option, config_from_args
from agent.core.config import Config, MqttSection, config_from_mapping
from agent.core.errors import ConfigError, UsageError
from agent.core.events import Inbound
from agent.core.output import emit_json
from agent.core.timefmt import parse_duration
from agent.runtime.check import run_checks
from agent.runtime.checklist import CheckOptions, CheckResult
from agent.runtime.daemon import Daemon, DaemonOptions
from agent.runtime.journal import configure_logging
from agent.store.owner import become_state_owner

LOCAL_BROKER = ("127.0.0.1", 1883)


def register(sub: Any) -> None:
    r = sub.add_parser(
        "run", help="run the gate daemon (systemd runs this)",
        description="The production daemon: relay locked first, then scanner, inputs, MQTT "
        "sync; SIGTERM/SIGINT shut down cleanly (relay locked, exit 0). Logs go to stderr "
        "with journald priorities when systemd runs it.",
    )
    add_config_option(r)
    r.add_argument("--check-config", action="store_true",
                   help="only validate the config (every problem listed) and exit 0/2")
    r.add_argument("--source", type=Path, metavar="PATH",
                   help="test rigs and benchmarks: read codes from a video file or image "
                   "folder instead of [scanner]")
    r.add_argument("--source-fps", type=float, default=10.0, metavar="N",
                   help="frames per second for --source (default 10)")
    r.add_argument("--source-loop", action="store_true",
                   help="with --source: play it again and again (soak tests)")
    r.add_argument("--json", action="store_true",
                   help="print decisions and door changes as JSON lines on stdout")
    r.add_argument("--duration", metavar="S", help="stop after this long (e.g. 30s, 10m)")
    r.add_argument("--exit-when-source-ends", action="store_true",
                   help="with --source: stop once the clip has played and the door locked")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser(
        "demo", help="run the gate on its embedded default (mock pins, simulated camera)",
        description="Runs the real daemon with mock pins, a generated clip of valid, expired, "
        "revoked, wrong gate, replayed and garbage codes, throwaway keys and state. Uses a "
        "broker on 127.0.0.1:1883 if one answers, else runs offline. With --config, gate, "
        "trust, policy, state (and [mqtt]) come from the file.",
    )
    add_config_option(d)
    d.add_argument("--source", type=Path, metavar="PATH", help="video file or image folder")
    d.add_argument("--duration", metavar="S",
                   help="stop after S (default: when the clip ends and the door has locked)")
    d.add_argument("--json", action="store_true",
                   help="one JSON line per decision and door change (for scripts)")
    d.add_argument("--fps", type=float, default=10.0, help="clip frame rate (default 10)")
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser(
        "check", help="installer checklist: config, keys, clock, relay, inputs, camera, broker",
        description="Runs every check and prints pass/fail/skip with a hint; exit 1 if any "
        "failed, 2 on a config error.",
    )
    add_config_option(c)
    c.add_argument("--json", action="store_true", help="one JSON object per check")
    c.add_argument("--yes", action="store_true",
                   help="click the relay without asking (otherwise asked on a terminal, "
                   "skipped without one)")
    c.add_argument("--config-only", action="store_true",
                   help="only validate the config (for systemd ExecStartPre=)")
    c.set_defaults(func=cmd_check)


# ---- run -----------------------------------------------------------------------------------


def _duration(text: str | None) -> float | None:
    return parse_duration(text) if text else None


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _serve(daemon: Daemon, stop: threading.Event) -> int:
    try:
        daemon.open()
        daemon.start()
        return daemon.serve(stop)
    finally:
        daemon.shutdown()


def cmd_run(args: argparse.Namespace) -> int:
    _fewer_malloc_arenas()
    configure_logging(args.verbose)
    config = config_from_args(args)
    if args.check_config:
        print(f"config {config.path}: valid")
        return EXIT_OK
    if args.exit_when_source_ends and args.source is None:
        raise UsageError("--exit-when-source-ends needs --source PATH")
    become_state_owner(config.state.dir)
    json_out = _JsonLines() if args.json else None
    options = DaemonOptions(
        source=args.source, source_fps=args.source_fps, source_loop=args.source_loop,
        observer=json_out,
        duration_s=_duration(args.duration), stop_when_source_ends=args.exit_when_source_ends,
    )
    stop = _stop_on_signals()
    code = _serve(Daemon(config, options), stop)
    if json_out is not None:
        json_out({"type": "stopped", "exit": code})
    return code


class _JsonLines:
    def __call__(self, item: dict[str, Any]) -> None:
        emit_json(item)


# ---- demo ------------------------------------------------------------------------------------


def _local_broker() -> MqttSection | None:
    try:
        socket.create_connection(LOCAL_BROKER, timeout=0.3).close()
    except OSError:
        return None
    # No centre acknowledges in the demo: events leave the outbox on the broker's PUBACK.
    return MqttSection(url=f"mqtt://{LOCAL_BROKER[0]}:{LOCAL_BROKER[1]}", ack="puback")


def _fewer_malloc_arenas(count: int = 2) -> None:
    """Cap glibc's malloc arenas before the daemon's threads start: each thread that
    allocates would get an arena of its own (up to 8 per core), each keeping freed memory.
    Measured on the camera daemon: 3-4 MB less RSS, the same CPU (docs/decisions.md)."""
    m_arena_max = -8  # from glibc's malloc.h
    with contextlib.suppress(OSError, AttributeError):  # not glibc: its allocator decides
        ctypes.CDLL("libc.so.6").mallopt(m_arena_max, count)


def _return_freed_memory() -> None:
    """Give the clip renderer's freed heap back to the OS: glibc keeps freed arenas, so
    the demo would otherwise carry the renderer's peak for its whole run."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo.clip import schedule, write_clip
    from agent.demo.kit import demo_codes, make_kit
    from agent.demo.view import make_view

    _fewer_malloc_arenas()
    configure_logging(args.verbose)
    if args.source is not None and not args.source.exists():
        raise UsageError(f"--source {args.source} does not exist: give a video file or a "
                         "folder of images")
    view = make_view(args.json)
    with tempfile.TemporaryDirectory(prefix="gate-agent-demo-") as tmp:
        root = Path(tmp)
        own: Config | None = config_from_args(args) if args.config else None
        if own is not None:
            kit = make_kit(root / "kit", own.gate.site, own.gate.id)
            config = own
        else:
            kit = make_kit(root / "kit")
            raw = kit.config(root / "state", policy={"on_untrusted_clock": "allow"},
                             door={"unlock_s": 2.0})
            config = config_from_mapping(raw, base_dir=root)
        mqtt = config.mqtt or _local_broker()
        view.note(f"gate {config.gate.site}/{config.gate.id}, state in {config.state.dir}")
        view.note("broker: " + (mqtt.url if mqtt else "none reachable on 127.0.0.1:1883 - "
                                "running offline, entries wait in the outbox"))
        source = args.source
        if source is None:
            codes = demo_codes(kit, time.time(), revoked=own is None)
            source = write_clip(schedule([(c.label, c.text) for c in codes]), root / "clip",
                                fps=args.fps)
            _return_freed_memory()
            view.note("clip: " + ", ".join(c.label for c in codes))
        from agent.protocol.keys import load_keyring

        options = DaemonOptions(
            pins="mock", source=source, source_fps=args.fps, observer=view, mqtt=mqtt,
            extra_keyring=load_keyring(kit.issuers_dir, kit.ops_dir),
            duration_s=_duration(args.duration), stop_when_source_ends=args.duration is None,
        )
        daemon = Daemon(config, options)
        stop = _stop_on_signals()
        try:
            daemon.open()
            assert daemon.controller is not None and daemon.entry_log is not None
            seq_before = daemon.entry_log.status().last_seq  # a --config state has a past
            if own is None:  # the revoked courier, through the same path as the centre's lists
                daemon.controller.submit(
                    Inbound("revocations_full", kit.revocation_list(1, time.time()))
                )
            daemon.start()
            view.start(daemon.controller.status)
            code = daemon.serve(stop)
            view.note(_demo_summary(daemon, online=mqtt is not None, after_seq=seq_before,
                                    kept_in=config.state.dir if own is not None else None))
        finally:
            daemon.shutdown()
            view.stop()
    return code


def _demo_summary(daemon: Daemon, online: bool, after_seq: int = 0,
                  kept_in: Path | None = None) -> str:
    """What the person watching should take away, said before the throwaway state goes
    (``kept_in``: the state is the --config file's own, and stays; only this run's scans,
    those after ``after_seq``, are counted)."""
    assert daemon.entry_log is not None
    scans = [e.event for e in daemon.entry_log.history()
             if e.event.get("kind") == "scan" and e.seq > after_seq]
    granted = sum(1 for event in scans if event.get("granted"))
    backlog = daemon.entry_log.backlog
    where = ("all sent to the broker" if online and not backlog
             else f"{backlog} waiting in the outbox for a broker")
    return (f"finished: {len(scans)} scans recorded ({granted} granted, "
            f"{len(scans) - granted} denied), {where}; "
            + (f"they stay in {kept_in}" if kept_in else "the demo state is removed now"))


# ---- check -------------------------------------------------------------------------------------


def _ask(question: str) -> bool:
    sys.stderr.write(question + " [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _tell(message: str) -> None:
    """When to show the card: on stderr, so --json stdout stays one object per check."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _show(result: CheckResult, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_json())
        return
    mark = {"pass": "PASS", "fail": "FAIL", "skip": "skip"}[result.status]
    line = f"{mark}  {result.name:<12} {result.detail}"
    if result.hint and result.status != "pass":
        line += f"\n      -> {result.hint}"
    print(line, flush=True)


def _quiet_hardware_logs(verbose: bool) -> None:
    """Each check reports its own failure with a hint; the drivers' retry warnings (and
    OpenCV's) would bury the checklist on the installer's terminal. ``-v`` shows them."""
    if verbose:
        return
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    logging.getLogger("hw").setLevel(logging.ERROR)


def cmd_check(args: argparse.Namespace) -> int:
    _quiet_hardware_logs(args.verbose)
    try:
        config = config_from_args(args)
        if config.mqtt is not None:  # what run would refuse: a URL or TLS file it cannot use
            from agent.sync.broker import settings_from_config

            settings_from_config(config.mqtt)
    except ConfigError as exc:
        detail = str(exc).removeprefix("config ")
        result = CheckResult("config", "fail", detail,
                             "fix every setting listed (config.example.toml explains each), "
                             "then re-run")
        _show(result, args.json)
        return EXIT_USAGE
    _show(CheckResult("config", "pass", f"{config.path} is valid"), args.json)
    if args.config_only:
        return EXIT_OK
    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    options = CheckOptions(ask=_ask if interactive else None, assume_yes=args.yes,
                           prompt=_tell)
    failed = False
    for result in run_checks(config, options):
        _show(result, args.json)
        failed = failed or not result.ok
    return EXIT_NO if failed else EXIT_OK
