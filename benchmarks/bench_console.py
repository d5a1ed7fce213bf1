"""The centre console at district scale: page server time and live-feed latency.

    .venv/bin/python benchmarks/bench_console.py [--quick] [--entries N] [--gates N]

A real PostgreSQL (started here, fsync on) holding 1,000 gates (status, a few offline,
some with holes) and 1,000,000 entries over 60 days from 6,000 couriers; a real
``gate-centre run`` process with ``[web]`` on a loopback Mosquitto. Measured over HTTP
on loopback with a signed-in session (so the figures include routing, session and
rendering, plus a loopback round trip):

- the Fleet page (all 1,000 gates on one page) and one courier's month of entries
  (the Entries search for that courier over 30 days, and the Courier page), p50/p99;
- beside each, the raw store query the page runs, called directly in this process
  (``queries.gates``, ``views.entries_page``, ``views.courier``): page / raw says what
  the web layer adds;
- the live feed: rows committed to the store one at a time while an SSE client reads
  ``/feed``; latency = the moment the ``data:`` line arrives minus the commit's return.
Targets (issue 14): page p50 <= 200 ms and p99 <= 500 ms, feed latency <= 1 s. Exit 1
on a miss.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.centre.store import connect, queries
from agent.centre.store.schema import upgrade
from agent.centre.web import records, views
from agent.centre.web.auth import hash_password
from agent.protocol.keys import write_keypair
from tests.broker import Broker, free_port
from tests.postgres import Postgres

ROOT = Path(__file__).resolve().parent.parent
COURIER = "C-00042"
DAYS = 60
PASSWORD = "benchmark password"
P50_MS, P99_MS, FEED_MS = 200.0, 500.0, 1000.0
COLUMNS = ("site", "gate", "seq", "id", "ts", "at", "kind", "granted", "reason", "sub", "cti",
           "method", "door", "event", "received_at")
DENY = ("expired", "revoked", "wrong_scope", "replayed", "bad_signature")


def fill(url: str, gates: int, entries: int, now: float) -> None:
    """Gates and entries through COPY (psycopg 3), then ANALYZE."""
    import psycopg

    rng = random.Random(14)
    per_gate = entries // gates
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY entries ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for g in range(gates):
                site, gate = f"site-{g // 10:03d}", f"gate-{g % 10}"
                times = sorted(now - rng.random() * DAYS * 86400 for _ in range(per_gate))
                for seq, at in enumerate(times, start=1):
                    sub = f"C-{rng.randrange(6000):05d}"
                    granted = rng.random() > 0.08
                    copy.write_row((site, gate, seq, f"{g:04d}{seq:08d}", "", at, "scan", granted,
                                    "ok" if granted else rng.choice(DENY), sub,
                                    f"{rng.getrandbits(64):016x}", "camera",
                                    "unlocked" if granted else "none", "{}", at + 0.2))
        for g in range(gates):
            site, gate = f"site-{g // 10:03d}", f"gate-{g % 10}"
            online = g % 20 != 7
            status = {"online": online, "revocations": {"version": 40, "age_s": 120.0},
                      "backlog": 0 if online else 37, "clock": {"trusted": g % 50 != 3},
                      "alarms": {"forced": True} if g % 100 == 11 else {}}
            cur.execute("INSERT INTO gates (site, gate, online, since, last_seen, status) "
                        "VALUES (%s, %s, %s, %s, %s, %s)",
                        (site, gate, online, now - 3600, now - (900 if not online else 20),
                         json.dumps(status)))
            cur.execute("INSERT INTO seq_marks (site, gate, upto) VALUES (%s, %s, %s)",
                        (site, gate, per_gate))
            if g % 40 == 5:
                cur.execute("INSERT INTO holes (site, gate, seq_from, seq_to, first_seen) "
                            "VALUES (%s, %s, %s, %s, %s)", (site, gate, 10, 12, now - 600))
        cur.execute("ANALYZE")


def centre_config(work: Path, broker_url: str, store_url: str, port: int) -> Path:
    keys = work / "keys"
    key_file, pub = write_keypair(keys / "private", "ops-centre")
    (keys / "ops").mkdir(parents=True, exist_ok=True)
    (keys / "ops" / "ops-centre.pub").write_bytes(pub.read_bytes())
    config = work / "centre.toml"
    config.write_text(f"""
[centre]
id = "bench"
[store]
url = "{store_url}"
[mqtt]
url = "{broker_url}"
[keys]
ops_key = "{key_file}"
trust_ops_dir = "{keys / 'ops'}"
[web]
bind = "127.0.0.1:{port}"
""", encoding="utf-8")
    return config


class Session:
    """A signed-in HTTP client on one keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookie = ""
        html = self.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', html)
        assert token
        body = urllib.parse.urlencode({"csrf": token.group(1), "name": "bench",
                                       "password": PASSWORD, "next": "/fleet"})
        status, _ = self._send("POST", "/login", body)
        assert status == 303, f"sign-in failed: {status}"

    def _send(self, method: str, path: str, body: str | None = None) -> tuple[int, str]:
        headers = {"cookie": self.cookie}
        if body is not None:
            headers["content-type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body, headers)
        resp = self.conn.getresponse()
        data = resp.read().decode()
        cookie = resp.getheader("set-cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return resp.status, data

    def get(self, path: str) -> str:
        status, data = self._send("GET", path)
        assert status == 200, f"GET {path}: {status}"
        return data


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def feed_latency(port: int, cookie: str, url: str, samples: int) -> list[float]:
    """Commit rows one at a time; the SSE line's arrival minus the commit's return."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/feed?sub=FEED-BENCH", headers={"cookie": cookie})
    resp = conn.getresponse()
    assert resp.status == 200
    arrived: dict[int, float] = {}
    ready = threading.Event()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                line = resp.readline()
            except (OSError, AttributeError, http.client.HTTPException):
                return  # the stream was closed at the end
            if not line:
                return
            if line.startswith(b"retry:"):
                ready.set()
            if line.startswith(b"data: "):
                arrived[json.loads(line[6:])["seq"]] = time.time()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(10)
    time.sleep(0.5)  # the feed's cursor is set when the stream opens
    db = connect(url)
    committed: dict[int, float] = {}
    try:
        for seq in range(1, samples + 1):
            now = time.time()
            with db.transaction():
                db.execute(f"INSERT INTO entries ({', '.join(COLUMNS)}) VALUES "
                           f"({', '.join('?' for _ in COLUMNS)})",
                           ("site-feed", "gate-0", seq, f"feed{seq}", "", now, "scan", False,
                            "revoked", "FEED-BENCH", "00", "camera", "none", "{}", now))
            committed[seq] = time.time()
            deadline = time.monotonic() + 5
            while seq not in arrived and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(random.random() * 0.3)  # land at different points of the poll
    finally:
        db.close()
        done.set()
        conn.close()
    return [(arrived[s] - committed[s]) * 1000 if s in arrived else float("inf")
            for s in committed]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 entries, fewer samples")
    parser.add_argument("--gates", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    entries = 100_000 if args.quick else args.entries
    n = 20 if args.quick else 60
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker")
        broker.start()
        pg = Postgres(work / "pg")
        pg.start()
        centre: subprocess.Popen[str] | None = None
        try:
            url = pg.create_database()
            db = connect(url)
            upgrade(db)
            records.add_user(db, "bench", "viewer", hash_password(PASSWORD), now)
            t0 = time.perf_counter()
            fill(url, args.gates, entries, now)
            load_s = time.perf_counter() - t0
            port = free_port()
            config = centre_config(work, broker.url, url, port)
            centre = subprocess.Popen(
                [sys.executable, "-m", "agent.cli.gate_centre", "run", "--config", str(config)],
                stdout=subprocess.PIPE, stderr=(work / "centre.log").open("w"), text=True,
                env=dict(os.environ, PYTHONPATH=str(ROOT)))
            assert centre.stdout is not None and centre.stdout.readline().strip() == "started"
            session = Session(port)
            month = f"since={_local(now - 30 * 86400)}&until={_local(now + 60)}"
            pages = {
                "fleet (1,000 gates)": ("/fleet", lambda: queries.gates(db, time.time())),
                "entries: 1 courier, 30 days": (
                    f"/entries?sub={COURIER}&{month}",
                    lambda: views.entries_page(db, views.EntryFilter(
                        sub=COURIER, since=now - 30 * 86400, until=now + 60))),
                "courier page (31 days)": (
                    f"/courier/{COURIER}",
                    lambda: views.courier(db, COURIER, now - 31 * 86400, str)),
            }
            results = []
            for name, (path, raw) in pages.items():
                session.get(path)  # warm: templates compiled, connections open
                page_ms = timed(lambda p=path: session.get(p), n)
                raw_ms = timed(raw, n)
                results.append((name, page_ms, raw_ms))
            rows_shown = session.get(f"/entries?sub={COURIER}&{month}").count("data-key=")
            feed = feed_latency(port, session.cookie, url, 10 if args.quick else 30)
            db.close()
        finally:
            if centre is not None:
                centre.terminate()
                centre.wait(20)
            pg.stop()
            broker.kill()
    print(f"centre console, PostgreSQL {args.gates} gates / {entries:,} entries "
          f"(loaded in {load_s:.0f} s), {os.cpu_count()} cores, {n} requests each")
    print(f"{'page':30} {'p50 ms':>7} {'p99 ms':>7} {'raw p50':>8} {'page/raw':>8} {'target':>16}")
    missed = False
    for name, page_ms, raw_ms in results:
        p50, p99, r50 = statistics.median(page_ms), pct(page_ms, 0.99), statistics.median(raw_ms)
        good = p50 <= P50_MS and p99 <= P99_MS
        missed |= not good
        print(f"{name:30} {p50:7.1f} {p99:7.1f} {r50:8.1f} {p50 / r50:8.1f} "
              f"{'<= 200 / 500':>16} {'ok' if good else 'MISS'}")
    f50, fmax = statistics.median(feed), max(feed)
    good = fmax <= FEED_MS
    missed |= not good
    print(f"{'live feed: commit -> SSE line':30} {f50:7.1f} {pct(feed, 0.99):7.1f} "
          f"{'':8} {'':8} {'max <= 1000':>16} {'ok' if good else 'MISS'} (max {fmax:.0f})")
    print(f"the courier's month shows {rows_shown} rows on its first page; raw: the same "
          "store query called directly; the SSE client is a plain HTTP reader, as a "
          "browser's EventSource gets the same bytes")
    return 1 if missed else 0


def _local(ts: float) -> str:
    """A form time (no zone) in the console's default zone, Asia/Shanghai."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts + 8 * 3600))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
