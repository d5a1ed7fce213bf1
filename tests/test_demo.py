"""``gate-agent demo``: the README's first command tells the whole story, offline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

from tests.conftest import ROOT
from tests.daemon_support import GATE_AGENT


def _demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path))
    return subprocess.run([GATE_AGENT, "demo", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)


def _broker_on_1883() -> bool:
    """The demo uses a broker on 127.0.0.1:1883 when one answers (a developer's own)."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", 1883)) == 0


def test_demo_json_shows_every_kind_of_decision_and_the_door(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    decisions = [x for x in lines if x["type"] == "decision"]
    assert [d["reason"] for d in decisions] == [
        "ok", "expired", "revoked", "wrong_scope", "malformed", "replayed", "ok",
    ]
    for d in decisions:
        assert {"granted", "reason", "sub", "cti", "ts", "method"} <= set(d)
        assert d["method"] == "sim"
    doors = [x["state"] for x in lines if x["type"] == "door"]
    assert doors == ["unlocked", "locked", "unlocked", "locked"]
    notes = [x.get("text", "") for x in lines if x["type"] == "note"]
    assert lines[-1]["type"] == "note"
    assert lines[-1]["text"].startswith("finished: 7 scans recorded (2 granted, 5 denied)")
    if _broker_on_1883():
        assert any("mqtt://127.0.0.1:1883" in text for text in notes)
    else:
        assert any("running offline" in text for text in notes)
        assert "7 waiting in the outbox" in lines[-1]["text"]
    assert list(tmp_path.glob("gate-agent-demo-*")) == []  # throwaway state removed


def test_demo_plain_lines_and_a_duration(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--duration", "4")
    assert done.returncode == 0, done.stderr
    assert "GRANTED ok" in done.stdout and "door unlocked" in done.stdout
    assert "demo: broker: none reachable" in done.stdout


def test_demo_refuses_a_missing_source(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--source", str(tmp_path / "nope.avi"))
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr
