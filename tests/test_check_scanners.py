"""``gate-agent check``'s scanner item on real parts: a camera that is a video clip, a serial
scanner that is a pseudo-terminal. OpenCV opens a file path like a device, so a clip of the
printed test card is the camera; the other end of a pty is the scanner module."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.core.config import load_config
from agent.runtime.check import check_scanner
from agent.runtime.check_scanner import TEST_CARD_TEXT
from agent.runtime.checklist import CheckOptions, CheckResult
from hw.render import mjpg_available, place, qr_image, scene, write_video
from tests.conftest import ROOT, require
from tests.daemon_support import GATE_AGENT, gate_files

CHECK_ENV = dict(os.environ, PYTHONPATH=str(ROOT), GPIOZERO_PIN_FACTORY="mock")


# ---- helpers ---------------------------------------------------------------------------------


def _clip(tmp_path: Path, name: str, frames: list[np.ndarray]) -> Path:
    require(mjpg_available(tmp_path), "OpenCV's MJPG codec",
            "install opencv-python-headless with its bundled FFmpeg (pip install -e .)")
    return write_video(frames, tmp_path / name, fps=10)


def _card_clip(tmp_path: Path) -> Path:
    card = place(scene(640, 480, seed=2), qr_image(TEST_CARD_TEXT, module_px=4))
    return _clip(tmp_path, "card.avi", [card] * 8)


def _camera_config(tmp_path: Path, device: str | int, fresh_list: bool = False) -> Path:
    """A gate with this camera; ``fresh_list``: a revocation list applied, so the scanner
    is the only item that can fail besides the host's clock."""
    kit, config = gate_files(tmp_path, scanner={"kind": "camera"}, camera={"device": device},
                             with_list=False)
    if fresh_list:
        listing = tmp_path / "list.bin"
        listing.write_bytes(kit.revocation_list(1, time.time()))
        done = subprocess.run([GATE_AGENT, "revocations", "apply", str(listing), "--config",
                               str(config)], capture_output=True, text=True, timeout=60,
                              env=CHECK_ENV)
        assert done.returncode == 0, done.stderr
    return config


def _serial_config(tmp_path: Path, port: str) -> Path:
    _, config = gate_files(tmp_path, scanner={"kind": "serial"}, serial={"port": port})
    return config


def _check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GATE_AGENT, "check", "--config", str(config), "--json"],
                          capture_output=True, text=True, timeout=60, env=CHECK_ENV,
                          stdin=subprocess.DEVNULL)


def _results(stdout: str) -> dict[str, dict[str, Any]]:
    return {r["check"]: r for r in map(json.loads, stdout.splitlines())}


def _quiet(stderr: str) -> None:
    """Only our own prompt: no traceback, no OpenCV/FFmpeg warnings."""
    for line in stderr.splitlines():
        assert line.startswith("scanner: "), stderr


def _scanner(config: Path, seconds: float) -> CheckResult:
    return check_scanner(load_config(config), CheckOptions(scan_seconds=seconds))


class Pty:
    """A pseudo-terminal standing in for a USB-CDC QR module; ``port`` is the gate's side."""

    def __init__(self) -> None:
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        os.close(slave)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        os.close(self.master)


@pytest.fixture
def scanner_pty() -> Iterator[Pty]:
    device = Pty()
    try:
        yield device
    finally:
        device.close()


# ---- camera ----------------------------------------------------------------------------------


def test_camera_reads_the_test_card_and_says_what_it_read(tmp_path: Path) -> None:
    config = _camera_config(tmp_path, str(_card_clip(tmp_path)), fresh_list=True)
    done = _check(config)
    results = _results(done.stdout)
    scanner = results["scanner"]
    assert scanner["status"] == "pass", scanner
    assert "read the test card" in scanner["detail"]
    assert scanner["code"] == "test_card" and scanner["text"] == TEST_CARD_TEXT
    assert scanner["decoder"] in ("zxing", "pyzbar")
    assert isinstance(scanner["ms"], float) and scanner["frames"] >= 1
    # --json: one object per check with its fields; exit 0 only when nothing failed.
    for result in results.values():
        assert {"check", "status", "ok", "detail", "hint"} <= result.keys()
        assert result["ok"] == (result["status"] != "fail")
    failed = {name for name, r in results.items() if r["status"] == "fail"}
    assert failed <= {"clock"}, results
    assert done.returncode == (1 if failed else 0)
    _quiet(done.stderr)


def test_camera_without_a_code_in_view_fails_with_what_to_do(tmp_path: Path) -> None:
    empty = _clip(tmp_path, "empty.avi", [scene(640, 480, seed=s) for s in range(4)])
    config = _camera_config(tmp_path, str(empty), fresh_list=True)
    done = subprocess.run([GATE_AGENT, "check", "--config", str(config)], capture_output=True,
                          text=True, timeout=60, env=CHECK_ENV, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    line = next(x for x in done.stdout.splitlines() if x.startswith("FAIL  scanner"))
    assert "gives frames" in line and "read no code" in line
    hint = done.stdout.split(line, 1)[1].splitlines()[1]
    assert hint.strip().startswith("->")
    assert "test card" in hint and "aim and focus" in hint and "gate-agent decode" in hint
    _quiet(done.stderr)


def test_dark_picture_says_lens_cap_or_light(tmp_path: Path) -> None:
    dark = _clip(tmp_path, "dark.avi", [np.full((480, 640), 6, np.uint8)] * 4)
    result = _scanner(_camera_config(tmp_path, str(dark)), seconds=2.0)
    assert result.status == "fail"
    assert "nearly black" in result.hint and "lens cap" in result.hint


def test_missing_camera_fails_at_once_with_a_hint_and_no_noise(tmp_path: Path) -> None:
    missing = tmp_path / "video9"
    done = _check(_camera_config(tmp_path, str(missing)))
    assert done.returncode == 1
    scanner = _results(done.stdout)["scanner"]
    assert scanner["status"] == "fail" and scanner["frames"] == 0
    assert scanner["detail"] == f"camera '{missing}' gives no picture: {missing} does not exist"
    assert "cable" in scanner["hint"] and "ls /dev/video*" in scanner["hint"]
    _quiet(done.stderr)


def test_camera_node_without_permission_names_the_video_group(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root opens any file: the permission hint cannot show")
    locked = tmp_path / "video0"
    locked.write_bytes(b"")
    locked.chmod(0)
    result = _scanner(_camera_config(tmp_path, str(locked)), seconds=3.0)
    assert result.status == "fail"
    assert f"no permission to open {locked}" in result.detail
    assert "video group" in result.hint


# ---- serial ----------------------------------------------------------------------------------


def test_serial_port_opens_and_a_scanned_code_is_reported(
    tmp_path: Path, scanner_pty: Pty
) -> None:
    config = _serial_config(tmp_path, scanner_pty.port)
    proc = subprocess.Popen([GATE_AGENT, "check", "--config", str(config), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=CHECK_ENV, stdin=subprocess.DEVNULL)
    try:
        assert proc.stderr is not None
        prompt = proc.stderr.readline()  # the check says when to scan: the port is open
        assert prompt.startswith("scanner: scan the test card") and scanner_pty.port in prompt
        scanner_pty.send(TEST_CARD_TEXT.encode() + b"\r\n")
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    scanner = _results(stdout)["scanner"]
    assert scanner["status"] == "pass", scanner
    assert scanner["detail"].startswith(f"{scanner_pty.port} opens at 9600 baud")
    assert "read the test card" in scanner["detail"]
    assert scanner["code"] == "test_card" and scanner["port"] == scanner_pty.port
    assert stderr == ""


def test_serial_pass_is_shown_shortened(tmp_path: Path, scanner_pty: Pty) -> None:
    from threading import Timer

    config = load_config(_serial_config(tmp_path, scanner_pty.port))
    said: list[str] = []

    def on_prompt(message: str) -> None:
        said.append(message)
        Timer(0.05, scanner_pty.send, [b"QM1:" + b"A" * 300 + b"\r"]).start()

    result = check_scanner(config, CheckOptions(scan_seconds=10.0, prompt=on_prompt))
    assert said and result.status == "pass"
    assert "read a pass (304 characters)" in result.detail
    assert result.data["code"] == "pass" and len(str(result.data["text"])) < 20


def test_serial_port_that_opens_but_sees_no_scan_passes_with_a_note(
    tmp_path: Path, scanner_pty: Pty
) -> None:
    result = _scanner(_serial_config(tmp_path, scanner_pty.port), seconds=0.3)
    assert result.status == "pass"
    assert "no code scanned" in result.detail and "test card" in result.hint


def test_missing_serial_port_fails_with_device_name_and_dialout(tmp_path: Path) -> None:
    port = "/dev/ttyACM-gate-agent-missing"
    done = _check(_serial_config(tmp_path, port))
    assert done.returncode == 1
    scanner = _results(done.stdout)["scanner"]
    assert scanner["status"] == "fail"
    assert scanner["detail"] == f"serial port {port} does not open (No such file or directory)"
    assert f"{port} does not exist" in scanner["hint"] and "dialout" in scanner["hint"]
    assert done.stderr == ""


def test_serial_port_held_by_the_running_gate_says_stop_it(
    tmp_path: Path, scanner_pty: Pty
) -> None:
    import serial

    held = serial.Serial(scanner_pty.port, 9600, exclusive=True)  # as the daemon holds it
    try:
        result = _scanner(_serial_config(tmp_path, scanner_pty.port), seconds=1.0)
    finally:
        held.close()
    assert result.status == "fail"
    assert "systemctl stop gate-agent" in result.hint
