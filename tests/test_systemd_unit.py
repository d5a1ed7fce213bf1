"""The systemd unit: valid for systemd itself, and carrying the options the issue requires."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from agent.runtime.sdnotify import Notifier
from tests.conftest import ROOT, require

UNIT = ROOT / "systemd" / "gate-agent.service"


def _options(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_declares_notify_watchdog_user_dirs_and_safety_hooks() -> None:
    opts = _options(UNIT.read_text())
    assert opts["Type"] == ["notify"]
    assert opts["WatchdogSec"] and opts["Restart"] == ["always"]
    assert opts["StartLimitIntervalSec"] and opts["StartLimitBurst"]
    assert opts["User"] == ["gate-agent"]
    assert set(opts["SupplementaryGroups"][0].split()) == {"gpio", "video", "dialout"}
    assert opts["StateDirectory"] == ["gate-agent"]
    assert opts["ConfigurationDirectory"] == ["gate-agent"]
    assert opts["ExecStartPre"][0].endswith("gate-agent check --config-only")
    assert opts["ExecStart"][0].endswith("gate-agent run")
    assert opts["ExecStopPost"][0].endswith("gate-agent relay-safe")
    assert opts["ProtectSystem"] == ["strict"] and opts["DevicePolicy"] == ["closed"]
    allowed = " ".join(opts["DeviceAllow"])
    for device in ("gpiochip", "video4linux", "ttyACM", "ttyUSB", "ttyAMA"):
        assert device in allowed
    assert "PrivateDevices" not in opts  # it would hide /dev/gpiochip*, /dev/video*


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    require(
        analyze is not None,
        "systemd-analyze",
        "apt-get install systemd (scripts/bootstrap.sh --test does)",
    )
    assert analyze is not None
    # verify insists the ExecStart binaries exist: point them at this checkout's venv.
    exe = Path(sys.executable).parent / "gate-agent"
    require(exe.exists(), "the gate-agent console script", "run scripts/bootstrap.sh")
    unit = tmp_path / "gate-agent.service"
    unit.write_text(UNIT.read_text().replace("/opt/gate-agent/venv/bin/gate-agent", str(exe)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # Unknown keys are only warnings (exit 0): any output about our unit is a finding.
    ours = [line for line in done.stderr.splitlines() if "gate-agent.service" in line]
    assert done.returncode == 0, done.stderr
    assert ours == [], "\n".join(ours)


def test_sd_notify_datagrams_reach_the_socket(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"})
        assert notifier.watchdog_s == 30.0
        assert notifier.ready("ready: locked, offline")
        assert server.recv(4096) == b"READY=1\nSTATUS=ready: locked, offline"
        assert notifier.watchdog()
        assert server.recv(4096) == b"WATCHDOG=1"


def test_sd_notify_is_a_no_op_outside_systemd() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False


def test_logs_carry_journald_priorities_under_systemd_and_levels_on_a_terminal() -> None:
    import io
    import logging

    from agent.runtime.journal import configure_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        out = io.StringIO()
        configure_logging(environ={"JOURNAL_STREAM": "8:1234"}, stream=out)
        logging.getLogger("agent.x").warning("relay %s", "stuck")
        logging.getLogger("agent.x").info("ready")
        assert out.getvalue().splitlines() == ["<4>agent.x: relay stuck", "<6>agent.x: ready"]
        out = io.StringIO()
        configure_logging(environ={}, stream=out)
        logging.getLogger("agent.x").error("broken")
        assert out.getvalue().rstrip().endswith("ERROR agent.x: broken")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
