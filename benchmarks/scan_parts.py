"""bench_daemon's pure parts of a scan, measured alone: paced as the daemon meets codes,
or back to back (see bench_daemon's docstring), and the floors the 2x rule is judged on."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.demo.clip import Shot, write_clip
from agent.demo.kit import make_kit

PURE = ("decode", "decide", "commit", "commit2", "fsync", "decode+commit", "decode+commit2")
CODE_EVERY = 2  # frames: the clips show each code for one frame, then an empty one


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def pure_parts(samples: int, work: Path, fps: float, paced: bool) -> dict[str, list[float]]:
    """ms per call of each pure part of a dynamic scan, measured alone.

    The frame is one the daemon decodes: a code rendered into a 1280x720 MJPG clip as the
    daemon's clips are, read back and made gray (the conversion is the product's work, not
    the library's). ``paced``: one scan's parts back to back, then idle until the next code
    of the daemon's clips is due (every CODE_EVERY frames), as the daemon meets them;
    otherwise back to back in a tight loop (hot caches, the CPU never idle).
    ``commit`` is one INSERT in its own transaction (a static grant's raw equivalent);
    ``commit2`` a dynamic grant's: the row and its replay key, two INSERTs in one
    transaction. They take turns in the commit's place, right after decide().
    """
    import sqlite3

    import cv2

    from agent.gate.policy import GateContext, decide
    from agent.protocol.keys import load_keyring
    from hw.decoders import ZxingDecoder

    kit = make_kit(work / "kit")
    now = time.time()
    text = kit.valid_code("C-pure", now)
    zxing = ZxingDecoder()  # zxing-cpp with the options the product passes, nothing else
    frame = _clip_frame(text, work / "clip", fps)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    keyring = load_keyring(kit.issuers_dir, kit.ops_dir)
    ctx = GateContext(site=kit.site, gate=kit.gate)
    out: dict[str, list[float]] = {name: [] for name in PURE}

    class _None:  # in-memory caches that hold nothing: decide() alone
        def is_revoked(self, cti: str, sub: str, iat: int) -> bool:
            return False

        def seen(self, key: str) -> bool:
            return False

    empty = _None()
    conn = sqlite3.connect(work / "raw.db", isolation_level=None)  # a fresh file each slice
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, event TEXT)")
    conn.execute("CREATE TABLE r (k TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID")
    fd = os.open(work / "raw.bin", os.O_WRONLY | os.O_CREAT, 0o600)
    event = "x" * 300

    def commit2(n: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO r(k, until) VALUES (?, ?)", (f"{n:064x}", now))
        conn.execute("INSERT INTO t(event) VALUES (?)", (event,))
        conn.execute("COMMIT")

    def fsync() -> None:
        os.pwrite(fd, b"x" * 512, 0)
        os.fsync(fd)

    def decode() -> None:
        if zxing.decode(gray).texts != [text]:
            raise SystemExit("bench_daemon: the pure decode did not read the code")

    def judge() -> None:
        if not decide(text, ctx, keyring, empty, empty, now).granted:
            raise SystemExit("bench_daemon: the pure decide() did not grant the code")

    def commit(n: int) -> None:
        conn.execute("INSERT INTO t(event) VALUES (?)", (event,))

    # A scan's order: decode, decide, then its commit; a static and a dynamic grant's
    # commit take turns in that place (a commit right after another runs warmer).
    steps = (("decode", lambda n: decode()), ("decide", lambda n: judge()),
             ("commit", commit), ("fsync", lambda n: fsync()))
    period = CODE_EVERY / fps
    next_at = time.monotonic()
    try:
        for n in range(samples):
            for name, step in steps:
                if name == "commit" and n % 2:
                    name, step = "commit2", commit2
                start = time.perf_counter()
                step(n)
                ms = (time.perf_counter() - start) * 1000
                out[name].append(ms)
                if name == "decode":
                    out["decode+" + ("commit2" if n % 2 else "commit")].append(ms)
            if paced:
                next_at += period
                time.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        os.close(fd)
        conn.close()
    return out


def _clip_frame(text: str, folder: Path, fps: float) -> Any:
    """The code's frame as the daemon's simulated camera delivers it (BGR, via MJPG)."""
    import cv2

    clip = write_clip([Shot(text, 1 / fps)], folder, fps=fps, width=1280, height=720)
    if clip.is_dir():  # no MJPG codec: PNG frames
        return cv2.imread(str(sorted(clip.iterdir())[0]), cv2.IMREAD_COLOR)
    cap = cv2.VideoCapture(str(clip))
    try:
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok:
        raise SystemExit(f"bench_daemon: cannot read back {clip}")
    return frame


@dataclass(frozen=True)
class Floor:
    """decode + a commit, paired sample by sample: its p99 and the medians as text."""

    commit: str
    p99: float
    text: str


def floor_of(parts: dict[str, list[float]], commit: str) -> tuple[Floor, list[float]]:
    paired = [d + c for d, c in zip(parts["decode+" + commit], parts[commit], strict=True)]
    text = (f"decode {statistics.median(parts['decode']):.2f} + decide "
            f"{statistics.median(parts['decide']):.2f} + {commit} "
            f"{statistics.median(parts[commit]):.2f} ms (fsync "
            f"{statistics.median(parts['fsync']):.2f})")
    return Floor(commit, percentile(paired, 0.99), text), paired
