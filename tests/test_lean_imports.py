"""Processes that never see a camera frame stay free of numpy and OpenCV (18 MB and more
resident each): gatectl on a staff laptop, and a gate with a serial QR module. No gate
loads ``cryptography`` (8 MB): its trusted keys are read without it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from agent.demo.kit import make_kit
from tests.daemon_support import install_list, toml_text

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("numpy", "cv2", "zxingcpp", "pyzbar")

_REPORT = """
import json, sys
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print(json.dumps(heavy))
"""


def _run(script: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", script + _REPORT.format(heavy=heavy)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_gatectl_help_loads_no_numpy_or_opencv() -> None:
    script = """
from agent.cli.gatectl import main
for argv in (["--help"], ["credential", "issue", "--help"], ["present", "--help"],
             ["revocations", "full", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
"""
    assert _run(script) == []


def test_serial_gate_builds_and_verifies_without_numpy_or_opencv(tmp_path: Path) -> None:
    kit = make_kit(tmp_path / "kit")
    raw = kit.config(tmp_path / "state", scanner={"kind": "serial"},
                     serial={"port": str(tmp_path / "no-such-tty")},
                     policy={"on_untrusted_clock": "allow"})  # no NTP in a container
    config = tmp_path / "config.toml"
    config.write_text(toml_text(raw))
    install_list(kit, tmp_path / "state", kit.revocation_list(1, time.time(), ()))
    code = kit.valid_code("C-1", time.time())
    script = f"""
import contextlib, io
from pathlib import Path
from agent.cli.gate_agent import main
from agent.core.config import load_config
from agent.runtime.daemon import Daemon, DaemonOptions

daemon = Daemon(load_config(Path({str(config)!r})), DaemonOptions(pins="mock", mqtt=None))
daemon.open()
assert type(daemon.source).__name__ == "SerialSource", daemon.source
daemon.close()
out = io.StringIO()
with contextlib.redirect_stdout(out):
    rc = main(["verify", "--config", {str(config)!r}, {code!r}])
assert rc == 0 and '"granted":true' in out.getvalue(), out.getvalue()
"""
    assert _run(script, (*HEAVY, "cryptography")) == []
