"""``gate-agent check``: every item with pass/fail/skip and a hint; exit codes 0/1/2."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.broker import Broker
from tests.conftest import ROOT
from tests.daemon_support import GATE_AGENT, gate_files


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), GPIOZERO_PIN_FACTORY="mock")
    return subprocess.run([GATE_AGENT, "check", *args], capture_output=True, text=True,
                          timeout=60, env=env, stdin=subprocess.DEVNULL)


def _results(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    return {r["check"]: r for r in map(json.loads, done.stdout.splitlines())}


def test_config_only_for_systemd_exec_start_pre(tmp_path: Path) -> None:
    _, config = gate_files(tmp_path)
    done = _check("--config", str(config), "--config-only")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("PASS  config")
    config.write_text(config.read_text().replace("[gate]", "[gate]\nidd = 1"))
    bad = _check("--config", str(config), "--config-only", "--json")
    assert bad.returncode == 2
    result = _results(bad)["config"]
    assert result["status"] == "fail" and "gate.idd: unknown key" in str(result["detail"])
    assert not str(result["detail"]).startswith("config ")  # not "config  config ..."


def test_fresh_gate_fails_on_the_missing_revocation_list_and_skips_the_click(
    tmp_path: Path,
) -> None:
    _, config = gate_files(tmp_path, with_list=False)
    done = _check("--config", str(config), "--json")
    assert done.returncode == 1
    results = _results(done)
    assert results["config"]["status"] == "pass"
    assert results["keys"]["status"] == "pass"
    assert results["state_dir"]["status"] == "pass"
    assert results["relay"]["status"] == "skip"  # no terminal to ask, no --yes
    assert "--yes" in str(results["relay"]["hint"])
    assert results["scanner"]["status"] == "skip"  # scanner.kind = none
    assert results["broker"]["status"] == "skip"
    assert results["revocations"]["status"] == "fail"
    assert "revocations apply" in str(results["revocations"]["hint"])
    assert results["clock"]["status"] in ("pass", "fail")


def test_a_ready_gate_passes_relay_inputs_broker_and_revocations(
    tmp_path: Path, broker: Broker
) -> None:
    kit, config = gate_files(tmp_path, broker.url, door={"exit_pin": 22, "contact_pin": 27},
                             with_list=False)
    revocations = tmp_path / "list.bin"
    revocations.write_bytes(kit.revocation_list(1, time.time()))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    applied = subprocess.run(
        [GATE_AGENT, "revocations", "apply", str(revocations), "--config", str(config)],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert applied.returncode == 0, applied.stderr
    done = _check("--config", str(config), "--json", "--yes")
    results = _results(done)
    for name in ("relay", "inputs", "broker", "revocations"):
        assert results[name]["status"] == "pass", results[name]
    assert "released and locked again" in str(results["relay"]["detail"])
    assert done.returncode == (0 if results["clock"]["status"] == "pass" else 1)


def test_unreachable_broker_fails_with_a_hint(tmp_path: Path) -> None:
    _, config = gate_files(tmp_path, "mqtt://127.0.0.1:9")
    results = _results(_check("--config", str(config), "--json"))
    assert results["broker"]["status"] == "fail"
    assert "cannot connect" in str(results["broker"]["detail"])
    assert results["broker"]["hint"]
