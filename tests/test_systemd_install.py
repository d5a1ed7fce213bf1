"""scripts/install.sh staged into a temp root: folders and modes, idempotent, uninstall."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "install.sh"


def _install(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--root", str(root), "--no-venv", *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_creates_config_keys_state_and_an_enabled_unit(tmp_path: Path) -> None:
    done = _install(tmp_path)
    assert done.returncode == 0, done.stderr
    etc = tmp_path / "etc" / "gate-agent"
    assert (etc / "config.toml").read_text() == (ROOT / "config.example.toml").read_text()
    assert _mode(etc) == 0o750 and _mode(etc / "config.toml") == 0o640
    for sub in ("keys/issuers", "keys/ops", "tls"):
        assert _mode(etc / sub) == 0o750
    assert _mode(tmp_path / "var" / "lib" / "gate-agent") == 0o750
    unit = tmp_path / "etc" / "systemd" / "system" / "gate-agent.service"
    assert "ExecStart=/opt/gate-agent/venv/bin/gate-agent run" in unit.read_text()
    wants = unit.parent / "multi-user.target.wants" / "gate-agent.service"
    assert wants.is_symlink() and str(wants.readlink()) == "/etc/systemd/system/gate-agent.service"


def test_rerun_upgrades_in_place_and_keeps_config_and_state(tmp_path: Path) -> None:
    assert _install(tmp_path).returncode == 0
    config = tmp_path / "etc" / "gate-agent" / "config.toml"
    config.write_text('[gate]\nsite = "mine"\n')
    entry_log = tmp_path / "var" / "lib" / "gate-agent" / "entries.sqlite"
    entry_log.write_bytes(b"precious")
    again = _install(tmp_path, "--prefix", "/srv/gate")
    assert again.returncode == 0, again.stderr
    assert "kept" in again.stderr
    assert config.read_text() == '[gate]\nsite = "mine"\n'
    assert entry_log.read_bytes() == b"precious"
    unit = (tmp_path / "etc" / "systemd" / "system" / "gate-agent.service").read_text()
    assert "ExecStart=/srv/gate/venv/bin/gate-agent run" in unit
    assert "/opt/gate-agent" not in unit


def test_uninstall_keeps_config_and_state_and_purge_removes_them(tmp_path: Path) -> None:
    assert _install(tmp_path).returncode == 0
    (tmp_path / "var" / "lib" / "gate-agent" / "entries.sqlite").write_bytes(b"x")
    done = _install(tmp_path, "--uninstall")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "opt" / "gate-agent").exists()
    assert not (tmp_path / "etc" / "systemd" / "system" / "gate-agent.service").exists()
    assert (tmp_path / "etc" / "gate-agent" / "config.toml").exists()
    assert (tmp_path / "var" / "lib" / "gate-agent" / "entries.sqlite").exists()
    assert _install(tmp_path, "--uninstall", "--purge").returncode == 0
    assert not (tmp_path / "etc" / "gate-agent").exists()
    assert not (tmp_path / "var" / "lib" / "gate-agent").exists()


def test_dry_run_touches_nothing_and_lists_apt_user_venv_and_unit(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--csi-camera", "--prefix", str(tmp_path / "opt")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "apt-get install" in out and "libzbar0" in out and "python3-picamera2" in out
    assert "useradd --system" in out or "usermod --append --groups gpio,video,dialout" in out
    assert "venv --system-site-packages" in out
    assert "systemctl enable gate-agent.service" in out
    assert not (tmp_path / "opt").exists()


def test_bad_option_is_a_usage_error(tmp_path: Path) -> None:
    done = _install(tmp_path, "--frobnicate")
    assert done.returncode == 2
    assert "unknown option --frobnicate" in done.stderr


def test_uninstall_finds_a_custom_prefix_from_the_installed_unit(tmp_path: Path) -> None:
    assert _install(tmp_path, "--prefix", "/srv/gate").returncode == 0
    (tmp_path / "srv" / "gate" / "venv").mkdir(parents=True)  # what pip would have made
    done = _install(tmp_path, "--uninstall")
    assert done.returncode == 0, done.stderr
    assert "/srv/gate" in done.stderr
    assert not (tmp_path / "srv" / "gate").exists()
    assert (tmp_path / "etc" / "gate-agent" / "config.toml").exists()


def test_a_system_folder_as_prefix_is_refused_before_anything_is_removed(tmp_path: Path) -> None:
    (tmp_path / "usr" / "keep").mkdir(parents=True)
    for prefix in ("/usr", "/", "/opt/"):
        done = _install(tmp_path, "--uninstall", "--prefix", prefix)
        assert done.returncode == 2 and "system folder" in done.stderr, done.stderr
    assert (tmp_path / "usr" / "keep").exists()
