"""The gate-centre systemd unit: valid for systemd, notify + watchdog + hardening, and the
service tells systemd it is ready only once it runs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from tests.broker import Broker
from tests.centre_support import centre_files
from tests.conftest import ROOT, require
from tests.test_systemd_unit import _options

UNIT = ROOT / "systemd" / "gate-centre.service"


def test_centre_unit_declares_notify_watchdog_user_and_hardening() -> None:
    opts = _options(UNIT.read_text())
    assert opts["Type"] == ["notify"] and opts["WatchdogSec"] and opts["Restart"] == ["always"]
    assert opts["User"] == ["gate-centre"] and opts["StateDirectory"] == ["gate-centre"]
    assert opts["ExecStartPre"][0].endswith("gate-centre db upgrade")
    assert opts["ExecStart"][0].endswith("gate-centre run")
    for key in ("NoNewPrivileges", "ProtectSystem", "PrivateDevices", "ProtectHome"):
        assert opts[key][0] in ("yes", "strict")


def test_systemd_analyze_verify_accepts_the_centre_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze", "apt-get install systemd")
    assert analyze is not None
    exe = Path(sys.executable).parent / "gate-centre"
    require(exe.exists(), "the gate-centre console script", "run scripts/bootstrap.sh")
    unit = tmp_path / "gate-centre.service"
    unit.write_text(UNIT.read_text().replace("/opt/gate-agent/venv/bin/gate-centre", str(exe)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    ours = [line for line in done.stderr.splitlines() if "gate-centre.service" in line]
    assert done.returncode == 0, done.stderr
    assert ours == [], "\n".join(ours)


def test_run_sends_ready_then_watchdog_and_stops_cleanly_on_sigterm(
        tmp_path: Path, broker: Broker) -> None:
    files = centre_files(tmp_path, broker.url, f"sqlite://{tmp_path}/c.db")
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(20)
        argv = [sys.executable, "-m", "agent.cli.gate_centre", "run", "--config",
                   str(files.config)]
        proc = subprocess.Popen(argv, env=dict(os.environ, NOTIFY_SOCKET=address,
                                                  WATCHDOG_USEC="3000000",
                                                  PYTHONPATH=str(ROOT)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            got = [sock.recv(4096).decode() for _ in range(2)]
            assert got[0].startswith("READY=1")
            assert got[1] == "WATCHDOG=1"  # every worker alive and the writer turning
        finally:
            proc.terminate()
            assert proc.wait(20) == 0
