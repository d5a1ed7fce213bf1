"""The real daemon after its state was damaged: revoked couriers stay denied, no seq is
reused, every status shows the recovery, and the centre's full list brings it back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.broker import Broker
from tests.conftest import ROOT
from tests.daemon_support import GATE_AGENT, DaemonProcess, clip, gate_files
from tests.sync_support import Subscriber

pytestmark = pytest.mark.slow


def _gate_agent(*args: str) -> dict[str, Any]:
    done = subprocess.run([GATE_AGENT, *args, "--json"], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode in (0, 1), done.stderr
    return {"rc": done.returncode, "lines": [json.loads(x) for x in done.stdout.splitlines()]}


def _run_clip(config: Path, tmp_path: Path, name: str, texts: list[str]) -> DaemonProcess:
    source = clip(tmp_path / name, texts)
    daemon = DaemonProcess(config, "--source", str(source), "--exit-when-source-ends")
    assert daemon.wait(90) == 0, daemon.stderr()
    return daemon


def test_lost_list_and_log_at_boot_deny_the_revoked_courier_and_stay_reported(
    tmp_path: Path, broker: Broker
) -> None:
    kit, online = gate_files(tmp_path, broker.url, door={"unlock_s": 0.2})
    offline = tmp_path / "offline.toml"
    offline.write_text(online.read_text().split("[mqtt]")[0])
    now = time.time()
    valid, revoked = (kit.credential(sub, now, holder=False) for sub in ("C-1", "C-9999"))
    subscriber = Subscriber(broker.url, [f"gate/v1/{kit.site}/{kit.gate}/#"])
    try:
        # The centre's list (v2, revoking C-9999) reaches the gate, retained, over MQTT.
        subscriber.publish("gate/v1/revocations/full", kit.revocation_list(2, now), retain=True)
        first = _run_clip(online, tmp_path, "a", [valid, revoked])
        assert [d["reason"] for d in first.of("decision")] == ["ok", "revoked"]
        last_seq = max(d["seq"] for d in first.of("decision"))
        # The card loses the list files (both copies) and the entry log.
        state = tmp_path / "state"
        for name in ("revocations.snap", "revocations.snap.prev", "revocations.journal",
                     "outbox.db", "outbox.db-wal", "outbox.db-shm"):
            (state / name).unlink(missing_ok=True)
        # Offline boot: no "admit everyone", and no seq the centre has seen comes back.
        second = _run_clip(offline, tmp_path, "b", [valid, revoked])
        decisions = second.of("decision")
        assert [d["reason"] for d in decisions] == ["revocations_unknown"] * 2
        assert min(d["seq"] for d in decisions) > last_seq
        assert second.of("door") == [] or all(
            d["state"] == "locked" for d in second.of("door"))
        # Every status command shows what happened, read-only, after the restart.
        revocations = _gate_agent("revocations", "status", "--config", str(offline))["lines"][0]
        assert revocations["state"] == "unknown" and revocations["high_water_version"] == 2
        assert revocations["problems"]
        outbox = _gate_agent("outbox", "status", "--config", str(offline))["lines"][0]
        assert outbox["lost"] and outbox["lost"][0][1] == last_seq and outbox["problems"]
        check = {r["check"]: r for r in _gate_agent("check", "--config",
                                                     str(offline))["lines"]}
        assert check["state"]["status"] == "fail" and check["revocations"]["status"] == "fail"
        # Back online: the gate asks for the list, the retained full list reinstalls it.
        third = DaemonProcess(online)
        assert subscriber.wait_for(lambda msgs: any(
            m[0].endswith("/status") and m[1] and json.loads(m[1]).get("online")
            and json.loads(m[1])["revocations"]["state"] == "ok"
            and json.loads(m[1]).get("recoveries") for m in msgs), 30), third.stderr()
        third.signal(signal.SIGTERM)
        assert third.wait(30) == 0
    finally:
        subscriber.close()
    revocations = _gate_agent("revocations", "status", "--config", str(offline))["lines"][0]
    assert revocations["state"] == "ok" and revocations["version"] == 2
    assert _gate_agent("outbox", "status", "--config", str(offline))["lines"][0]["lost"]
    cleared = _gate_agent("state", "clear", "--config", str(offline))["lines"][0]
    assert cleared["cleared"] >= 1
    assert _gate_agent("outbox", "status", "--config", str(offline))["lines"][0]["lost"] == []
