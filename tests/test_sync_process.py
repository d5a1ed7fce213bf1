"""The sync process dies hard (SIGKILL): nothing is lost and the centre sees it offline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.broker import Broker
from tests.conftest import ROOT
from tests.sync_support import Subscriber

SITE, GATE = "binhai-0001", "north-1"
BASE = f"gate/v1/{SITE}/{GATE}"


def _start(broker: Broker, state: Path, count: int, inflight: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.sync_agent_proc", broker.url, str(state), SITE, GATE,
         str(count), str(inflight)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "connected"
    return proc


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def test_sigkill_mid_drain_then_restart_loses_nothing(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker.url, [f"{BASE}/events"])
    proc = _start(broker, tmp_path, 3000, inflight=5)
    try:
        assert sub.wait_for(lambda m: len(m) >= 300)
        _kill(proc)
        seen_before = len(sub.messages)
        assert seen_before < 3000, "drain finished before the kill: nothing was tested"
        proc = _start(broker, tmp_path, 0, inflight=100)
        appended = set((tmp_path / "appended.txt").read_text().split())
        assert sub.wait_for(lambda m: {json.loads(p)["id"] for _, p, _ in m} >= appended)
        assert len(appended) == 3000
    finally:
        _kill(proc)
        sub.close()


def test_killed_agent_flips_retained_status_to_offline(broker: Broker, tmp_path: Path) -> None:
    proc = _start(broker, tmp_path, 0, inflight=10)
    try:
        watcher = Subscriber(broker.url, [f"{BASE}/status"])
        assert watcher.wait_for(lambda m: any(json.loads(p)["online"] for _, p, _ in m))
        watcher.close()
    finally:
        _kill(proc)
    # A late subscriber gets the retained status: the broker published the last will.
    deadline = time.monotonic() + 20
    while True:
        late = Subscriber(broker.url, [f"{BASE}/status"])
        late.wait_for(lambda m: len(m) > 0, timeout=2)
        status = late.json_on("/status")
        late.close()
        if status and status[-1]["online"] is False:
            break
        assert time.monotonic() < deadline, f"status still {status}"
    assert status[-1]["reason"] == "connection_lost"
    assert status[-1]["gate"] == GATE
