"""Scan-to-unlock latency through the real daemon path, its pure parts, and daemon RSS.

Latency: 1280x720 MJPG clips of distinct valid codes are played by the simulated camera
into the real daemon (mock pins): frame -> change gate -> zxing-cpp -> dedupe -> queue ->
controller -> decide -> replay key (dynamic) -> SQLite append (fsync) -> Door.pulse().
Measured per grant from the Scan's ``mono`` (when the capture thread handed the frame over
for decoding) to the monotonic time at which ``Door.pulse()`` returned. Two runs: dynamic
presentations with the default policy (the couriers' default) and static credentials with
``accept_static = true``. Presentations are only valid for 30 s, so each run plays a few
clips of about 100 codes, each signed just before it is rendered and played.

Per stage, the same grants (ScanHandler.stages): frame to controller (capture wait,
decode, dedupe, queue), judge, commit of the row, relay pulse; printed with the mean of
each over the slowest 1% of grants, so a miss says where its p99 went.

Pure parts, same run, each measured two ways: zxing-cpp decoding a presentation frame as
the daemon's simulated camera delivers it (rendered into the same kind of 1280x720 MJPG
clip, read back, made gray outside the timing), ``decide()`` on a presentation (both
signatures, in-memory caches), the raw commit a grant needs (a static grant: one INSERT,
its own WAL transaction, synchronous=FULL; a dynamic grant: the row and its replay key,
two INSERTs in one transaction, "commit2"), one write + fsync of a small file on this
disk. "Paced": one scan's parts back to back in the daemon's order, then idle until the
clips' next code is due (every CODE_EVERY frames), as the daemon meets codes; "tight
loop": back to back. Measured on the same machine, the same calls cost 1.4-2.3x more
paced (decide 0.28 -> 0.60 ms, decode 1.5 -> 2.1 ms): caches and the CPU go cold between
codes for any program, so the 2x rule is judged against the paced parts (the daemon's
conditions); the tight-loop ratio is printed beside it, without a target. The pure parts
run in slices, one before the daemon runs and one after each clip, so a busy spell on a
shared machine weighs on both sides of the comparison.

RSS (separate processes, sampled from /proc): ``gate-agent run`` with the simulated camera
and with a serial scanner (a pty), both with a loopback Mosquitto when one is installed,
and ``gate-agent demo``; beside them a process that only imports the libraries.

Targets: dynamic scan-to-unlock median <= 6 ms, p99 <= 15 ms, and p99 <= 2x (decode +
commit2) p99 (issue 13); static median <= 10 ms, p99 <= 30 ms (issue 6) and p99 <= 2x
(decode + commit) p99;
RSS: run with camera <= 100 MB, without camera <= 45 MB, demo <= 120 MB (issue 13; the demo
compared at its end, its start-up peak beside). Ends with the targets table, exits 1 on a miss.

    .venv/bin/python benchmarks/bench_daemon.py [--quick] [--scans N] [--no-rss]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scan_parts import CODE_EVERY, Floor, floor_of, percentile, pure_parts
from targets import Row, at_most, report

from agent.core.config import config_from_mapping
from agent.demo.clip import Shot, write_clip
from agent.demo.kit import DemoKit, make_kit
from agent.runtime.daemon import Daemon, DaemonOptions

ROOT = Path(__file__).resolve().parent.parent
MIN_GRANTS = 400  # per kind, issue 13


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


STAGES = ("frame to controller", "judge", "commit row", "pulse")
PER_CLIP = 100  # codes per clip: presentations are valid 30 s


def latency_run(kind: str, scans: int, fps: float, work: Path, per_clip: int = 100,
                between: Callable[[], None] | None = None
                ) -> tuple[list[float], int, list[tuple[float, ...]]]:
    """Scan-to-unlock ms per grant for ``kind`` "dynamic" or "static", codes read, and each
    grant's ms per stage (STAGES: capture + decode + queue, judge, commit, relay).
    ``between`` runs after each clip (a slice of the pure parts)."""
    kit = make_kit(work / "kit")
    dynamic = kind == "dynamic"
    policy: dict[str, object] = {"on_untrusted_clock": "allow"}
    if not dynamic:
        policy["accept_static"] = True
    raw = kit.config(work / "state", policy=policy, door={"unlock_s": 0.05},
                     scanner={"dedupe_s": 0.5, "kind": "none"})
    config = config_from_mapping(raw, base_dir=work)
    install_list(kit, work / "state")
    ms: list[float] = []
    stages: list[tuple[float, ...]] = []
    scanned = 0
    for first in range(0, scans, per_clip):
        now = time.time()
        subs = [f"C-{n}" for n in range(first, min(scans, first + per_clip))]
        texts = [kit.valid_code(sub, now) if dynamic else kit.credential(sub, now, holder=False)
                 for sub in subs]
        shots: list[Shot] = [Shot(None, 0.5)]
        for text in texts:
            shots += [Shot(text, 1 / fps), Shot(None, (CODE_EVERY - 1) / fps)]
        clip = write_clip(shots, work / f"clip-{kind}-{first}", fps=fps, width=1280,
                          height=720)
        daemon = Daemon(config, DaemonOptions(pins="mock", source=clip, source_fps=fps,
                                              mqtt=None, stop_when_source_ends=True))
        daemon.open()
        try:
            daemon.start()
            daemon.serve(threading.Event())
            assert daemon.controller is not None
            pairs = list(daemon.controller.latencies)
            stamps = list(daemon.controller.scans.stages)
            scanned += int(daemon.source.status()["codes"]) if daemon.source else 0
        finally:
            daemon.shutdown()
        if between is not None:
            between()
        ms += [(pulse - frame) * 1000 for frame, pulse in pairs]
        stages += [tuple((b - a) * 1000 for a, b in itertools.pairwise(t))
                   for t in stamps]
    return ms, scanned, stages


def install_list(kit: DemoKit, state: Path) -> None:
    """The provisioning list: without one every grant is ``revocations_unknown``."""
    from agent.protocol.keys import load_keyring
    from agent.protocol.revocation import parse_revocation_list
    from agent.store import RevocationStore

    keyring = load_keyring(kit.issuers_dir, kit.ops_dir)
    with RevocationStore(state) as store:
        store.apply(parse_revocation_list(kit.revocation_list(1, time.time()), keyring,
                                          time.time()))


def demo_rss(duration: float | None) -> tuple[float, float, float]:
    """Peak and final RSS of a `gate-agent demo` process, and its wall time."""
    exe = Path(sys.executable).parent / "gate-agent"
    args = [str(exe), "demo", "--json"] + (["--duration", f"{duration:g}"] if duration else [])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    peak = last = 0.0
    while proc.poll() is None:
        value = rss_mb(proc.pid)
        if value:
            peak, last = max(peak, value), value
        time.sleep(0.5)
    return peak, last, time.monotonic() - start


def run_rss(seconds: float, work: Path, camera: bool,
            broker_url: str | None) -> tuple[float, float, float, int]:
    """`gate-agent run` on mock pins: with the demo clip looping in the simulated camera, or
    with a serial scanner on a pty. RSS at 3 s, peak, end (MB) and decisions made."""
    from agent.demo.clip import schedule
    from agent.demo.kit import demo_codes
    from tests.daemon_support import toml_text

    kit = make_kit(work / "kit")
    sections: dict[str, dict[str, object]] = {"policy": {"on_untrusted_clock": "allow"}}
    extra: list[str] = []
    keep_open: list[int] = []
    if camera:
        codes = demo_codes(kit, time.time())
        clip = write_clip(schedule([(c.label, c.text) for c in codes]), work / "clip", fps=10)
        extra = ["--source", str(clip), "--source-loop"]
    else:
        master, slave = os.openpty()
        keep_open += [master, slave]
        sections["scanner"] = {"kind": "serial"}
        sections["serial"] = {"port": os.ttyname(slave)}
    raw = kit.config(work / "state", **sections)
    if broker_url:
        raw["mqtt"] = {"url": broker_url, "ack": "puback"}
    config = work / "gate.toml"
    config.write_text(toml_text(raw))
    exe = Path(sys.executable).parent / "gate-agent"
    env = dict(os.environ, PYTHONPATH=str(ROOT), GPIOZERO_PIN_FACTORY="mock")
    proc = subprocess.Popen(
        [str(exe), "run", "--config", str(config), "--json", "--duration", f"{seconds:g}",
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )
    samples: list[float] = []
    decisions = 0

    def count() -> None:
        nonlocal decisions
        assert proc.stdout is not None
        for line in proc.stdout:
            decisions += '"decision"' in line

    reader = threading.Thread(target=count, daemon=True)
    reader.start()
    while proc.poll() is None:
        value = rss_mb(proc.pid)
        if value:
            samples.append(value)
        time.sleep(1.0)
    reader.join(5)
    for fd in keep_open:
        os.close(fd)
    if not samples:
        return 0.0, 0.0, 0.0, decisions
    return samples[min(2, len(samples) - 1)], max(samples), samples[-1], decisions


def imports_rss(camera: bool = True) -> float:
    """RSS (MB) of a fresh process that only imports what the daemon imports."""
    libs = "paho.mqtt.client, tinydb, gpiozero, nacl.signing, cbor2, sqlite3, serial"
    if camera:
        libs += ", cv2, numpy, zxingcpp, pyzbar.pyzbar"
    probe = (f"import {libs}\n"
             "print([l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0]"
             ".split()[1])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    return int(out) / 1024


def stats_line(name: str, ms: list[float]) -> str:
    return (f"| {name} | {len(ms)} | {statistics.median(ms):.2f} | {percentile(ms, 0.90):.2f} "
            f"| {percentile(ms, 0.99):.2f} | {max(ms):.2f} |")


def latency_rows(kind: str, ms: list[float], need: int, floor: Floor, hot: Floor,
                 median_target: float, p99_target: float) -> list[Row]:
    """``floor``: the pure parts paced as the daemon meets scans (the 2x rule's base);
    ``hot``: the same parts in a tight loop, shown beside it (no target)."""
    med, p99 = statistics.median(ms), percentile(ms, 0.99)
    return [
        Row(f"{kind} grants measured", f"{len(ms)}", f">= {need}", "", len(ms) >= need),
        Row(f"{kind} scan-to-unlock median", f"{med:.2f} ms",
            f"<= {median_target:g} ms", floor.text, at_most(med, median_target)),
        Row(f"{kind} scan-to-unlock p99", f"{p99:.2f} ms", f"<= {p99_target:g} ms",
            floor.text, at_most(p99, p99_target)),
        Row(f"{kind} p99 / (decode + {floor.commit}) p99, paced", f"{p99 / floor.p99:.2f}x",
            "<= 2x", f"decode + {floor.commit} p99 {floor.p99:.2f} ms",
            at_most(p99 / floor.p99, 2.0)),
        Row(f"{kind} p99 / (decode + {hot.commit}) p99, tight loop", f"{p99 / hot.p99:.2f}x",
            "(context)", f"decode + {hot.commit} p99 {hot.p99:.2f} ms", None),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer scans, shorter runs")
    parser.add_argument("--scans", type=int, default=None, help="grants per kind (>= 400)")
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--soak", type=float, default=60.0, help="seconds per RSS run")
    parser.add_argument("--no-rss", action="store_true",
                        help="latency only: skip the RSS runs (their rows are left out)")
    args = parser.parse_args()
    scans = args.scans or (100 if args.quick else 440)  # a few codes may be missed
    latencies: dict[str, tuple[list[float], int, list[tuple[float, ...]]]] = {}
    paced: dict[str, list[float]] = {}
    hot: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        # The pure parts in slices, one before the daemon runs and one after each of their
        # clips, so a busy spell on a shared machine weighs on both sides of the comparison.
        clips = -(-scans // PER_CLIP)
        samples = max(24, -(-scans // (2 * clips + 1)))
        slices = itertools.count()

        def pure_slice() -> None:
            step = next(slices)
            for into, pace in ((hot, False), (paced, True)):
                work = Path(tmp) / f"pure-{step}-{'paced' if pace else 'hot'}"
                for name, ms in pure_parts(samples, work, args.fps, pace).items():
                    into.setdefault(name, []).extend(ms)

        pure_slice()
        for kind in ("dynamic", "static"):
            latencies[kind] = latency_run(kind, scans, args.fps, Path(tmp) / kind, PER_CLIP,
                                          pure_slice)
    print()
    print("## scan-to-unlock (frame handed to decoder -> Door.pulse returned), 1280x720, and "
          f"its pure parts (ms); paced = one scan's parts every {CODE_EVERY} frames at "
          f"{args.fps:g} fps, as the daemon meets codes; tight loop = back to back")
    print("| what | n | median | p90 | p99 | max |")
    print("|---|---|---|---|---|---|")
    for kind, (ms, _read, _stages) in latencies.items():
        print(stats_line(f"{kind}, real daemon path", ms))
    floors: dict[str, tuple[Floor, Floor]] = {}
    for label, parts in (("paced", paced), ("tight loop", hot)):
        for name, ms in parts.items():
            if "+" not in name:  # the decodes paired with each commit are shown summed
                print(stats_line(f"{name} alone, {label}", ms))
    for kind, commit in (("dynamic", "commit2"), ("static", "commit")):
        (floor, paired), (hot_floor, hot_paired) = floor_of(paced, commit), floor_of(hot, commit)
        print(stats_line(f"decode + {commit} (paired), paced", paired))
        print(stats_line(f"decode + {commit} (paired), tight loop", hot_paired))
        floors[kind] = floor, hot_floor

    print()
    print("## where scan-to-unlock goes, per stage of the same grants (ms): median, p99, and "
          "the mean over the slowest 1% of grants")
    print("| kind | " + " | ".join(STAGES) + " |")
    print("|---|" + "---|" * len(STAGES))
    for kind, (_ms, _read, stages) in latencies.items():
        slowest = sorted(stages, key=sum)[-max(1, len(stages) // 100):]
        cells = [f"{statistics.median(v):.2f} / {percentile(list(v), 0.99):.2f} / "
                 f"{statistics.mean(t[i] for t in slowest):.1f}"
                 for i, v in enumerate(zip(*stages, strict=True))]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    dyn = latencies["dynamic"][0]
    sta = latencies["static"][0]
    need = MIN_GRANTS if scans >= MIN_GRANTS else int(0.9 * scans)  # --quick: a smoke run
    rows = [*latency_rows("dynamic", dyn, need, *floors["dynamic"], 6.0, 15.0),
            *latency_rows("static", sta, need, *floors["static"], 10.0, 30.0)]
    if not args.no_rss:
        rows += rss_section(20.0 if args.quick else args.soak)
    return report("bench_daemon", rows)


def rss_section(soak_s: float) -> list[Row]:
    """The RSS runs (run with camera, with a serial scanner, demo): their table and rows."""
    broker = _broker(Path(tempfile.mkdtemp(prefix="bench-broker-")))
    url = f"mqtt://127.0.0.1:{broker.port}" if broker else None
    rss: dict[str, tuple[float, float, float, int]] = {}
    try:
        for label, camera in (("camera", True), ("serial", False)):
            with tempfile.TemporaryDirectory(prefix="bench-rss-") as tmp:
                rss[label] = run_rss(soak_s, Path(tmp), camera, url)
    finally:
        if broker is not None:
            broker.kill()
    peak, last, wall = demo_rss(None)
    base, base_serial = imports_rss(True), imports_rss(False)
    print()
    print(f"## RSS (MB), {soak_s:g} s runs, broker: {url or 'none (offline)'}")
    print("| process | at 3 s | peak | end | decisions |")
    print("|---|---|---|---|---|")
    for label, (first, top, end, decisions) in rss.items():
        print(f"| gate-agent run, {label} | {first:.0f} | {top:.0f} | {end:.0f} | {decisions} |")
    print(f"| gate-agent demo ({wall:.0f} s) | - | {peak:.0f} | {last:.0f} | - |")
    return [
        Row(f"gate-agent run with camera, peak RSS ({soak_s:g} s)", f"{rss['camera'][1]:.0f} MB",
            "<= 100 MB", f"imports alone {base:.0f} MB", at_most(rss["camera"][1], 100.0)),
        Row(f"gate-agent run, serial scanner, peak RSS ({soak_s:g} s)",
            f"{rss['serial'][1]:.0f} MB", "<= 45 MB", f"imports alone {base_serial:.0f} MB",
            at_most(rss["serial"][1], 45.0)),
        Row(f"gate-agent demo RSS at the end ({wall:.0f} s)",
            f"{last:.0f} MB (peak {peak:.0f} MB)", "<= 120 MB", f"imports alone {base:.0f} MB",
            at_most(last, 120.0)),
    ]


def _broker(folder: Path) -> Any:
    """A loopback Mosquitto for the RSS runs (the daemon loads paho and TLS with one)."""
    from tests.broker import Broker, mosquitto_path

    if mosquitto_path() is None:
        return None
    broker = Broker(folder)
    broker.start()
    return broker


if __name__ == "__main__":
    raise SystemExit(main())
