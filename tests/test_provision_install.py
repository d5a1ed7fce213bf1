"""The installer's side around provisioning: install.sh stages the first-boot pieces,
the first-boot unit is valid, check --config-only refuses what run would refuse, and the
shipped relay level matches the wiring page."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from agent.cli import gate_agent
from tests.conftest import ROOT, require

SCRIPTS = ROOT / "scripts"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", *args], capture_output=True, text=True, timeout=120)


def test_a_staged_root_gets_the_first_boot_unit_sysusers_and_tmpfiles(tmp_path: Path) -> None:
    done = _run(str(SCRIPTS / "install.sh"), "--root", str(tmp_path), "--no-venv",
                "--prefix", "/srv/gate")
    assert done.returncode == 0, done.stderr
    system = tmp_path / "etc" / "systemd" / "system"
    unit = (system / "gate-agent-provision.service").read_text()
    assert "ExecStart=/srv/gate/venv/bin/gate-agent provision apply /boot/firmware/gate-agent" \
        in unit
    wants = system / "multi-user.target.wants" / "gate-agent-provision.service"
    assert str(wants.readlink()) == "/etc/systemd/system/gate-agent-provision.service"
    sysusers = (tmp_path / "usr/lib/sysusers.d/gate-agent.conf").read_text()
    assert re.search(r"^u gate-agent ", sysusers, re.M)
    for group in ("gpio", "video", "dialout"):
        assert f"m gate-agent {group}" in sysusers
    tmpfiles = (tmp_path / "usr/lib/tmpfiles.d/gate-agent.conf").read_text()
    assert "d /etc/gate-agent 0750 root gate-agent" in tmpfiles
    assert "d /var/lib/gate-agent 0750 gate-agent gate-agent" in tmpfiles
    done = _run(str(SCRIPTS / "install.sh"), "--root", str(tmp_path), "--uninstall")
    assert done.returncode == 0, done.stderr
    assert not (system / "gate-agent-provision.service").exists()
    assert not (tmp_path / "usr/lib/sysusers.d/gate-agent.conf").exists()


def test_a_wheelhouse_without_pinned_requirements_is_refused(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    done = _run(str(SCRIPTS / "install.sh"), "--root", str(tmp_path / "r"),
                "--wheelhouse", str(tmp_path / "wheels"))
    assert done.returncode == 2
    assert "has no requirements.txt" in done.stderr and "build-wheelhouse.sh" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["--arch", "sparc", "OUT"], "use aarch64"),
    (["OUT"], "give --arch"),
    (["--arch", "aarch64"], "give the output folder"),
    (["--arch", "aarch64", "--python", "3.9", "OUT"], "3.11 or newer"),
])
def test_build_wheelhouse_refuses_what_it_cannot_build(args: list[str], message: str) -> None:
    done = _run(str(SCRIPTS / "build-wheelhouse.sh"), *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_build_image_refuses_a_missing_image_file(tmp_path: Path) -> None:
    done = _run(str(SCRIPTS / "build-image.sh"), str(tmp_path / "nope.img"))
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_systemd_analyze_accepts_the_first_boot_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze", "apt-get install systemd")
    unit = tmp_path / "gate-agent-provision.service"
    text = (ROOT / "systemd" / "gate-agent-provision.service").read_text()
    fake = tmp_path / "gate-agent"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    unit.write_text(text.replace("/opt/gate-agent/venv/bin/gate-agent", str(fake)))
    done = subprocess.run([str(analyze), "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60)
    problems = [line for line in done.stderr.splitlines()
                if "gate-agent-provision" in line and "gate-agent.service" not in line]
    assert not problems, done.stderr


def test_check_config_only_refuses_a_broker_url_run_would_refuse(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ("issuers", "ops"):
        (tmp_path / sub).mkdir()
    config = tmp_path / "config.toml"
    config.write_text('[gate]\nsite = "s"\nid = "g"\n[trust]\nkeys_dir = "issuers"\n'
                      'ops_keys_dir = "ops"\n[mqtt]\nurl = "htp://host"\n')
    assert gate_agent.main(["check", "--config-only", "--config", str(config)]) == 2
    assert "mqtt.url" in capsys.readouterr().out


def test_gate_agent_and_gatectl_report_their_version(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        gate_agent.main(["--version"])
    assert done.value.code == 0
    assert re.fullmatch(r"gate-agent \S+\n", capsys.readouterr().out)


def test_the_example_relay_level_is_the_one_the_wiring_page_gives() -> None:
    example = tomllib.loads((ROOT / "config.example.toml").read_text())
    wiring = (ROOT / "docs" / "wiring.md").read_text()
    row = next(line for line in wiring.splitlines() if line.startswith("| lock relay"))
    levels = set(re.findall(r"relay_active_high = (true|false)", row))
    assert levels == {str(example["door"]["relay_active_high"]).lower()}


def test_the_gate_dependencies_bring_lgpio_on_a_pi_only() -> None:
    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lgpio = next(Requirement(d) for d in deps if d.startswith("lgpio"))
    assert lgpio.marker is not None
    for machine, wanted in (("aarch64", True), ("armv7l", True), ("x86_64", False)):
        env = {"platform_machine": machine, "sys_platform": "linux"}
        assert lgpio.marker.evaluate(env) is wanted, machine
