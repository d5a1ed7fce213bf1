"""The scanner item of ``gate-agent check``: the camera reads a test card, or the serial port opens.

Both run the daemon's own source (``hw.camera.CameraSource`` / ``hw.serial_scanner.SerialSource``)
for a short window, so what passes here is what the gate will do. A failure names the
device and says what the installer does next (cable, device name, group, lens, aim).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from typing import Any

import numpy as np

from agent.core.config import Config
from agent.core.errors import GateError
from agent.runtime.checklist import CheckOptions, CheckResult
from agent.runtime.hwsettings import camera_settings, serial_settings
from hw.decoders import Decoder, DecodeResult

# The printed card installers hold at the reader (scripts/hil_camera_card.py --make-card).
# Alphanumeric QR mode like a real pass; ~300 characters -> version 10, a pass's size.
TEST_CARD_PREFIX = "GATE-AGENT-TEST-CARD"
TEST_CARD_TEXT = TEST_CARD_PREFIX + ":" + "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:" * 6

_PASS_PREFIXES = ("QM1:", "QP1:")
_SHOWN_CHARS = 40
CARD_HOW = "the printed test card (scripts/hil_camera_card.py --make-card card.png) or a pass"


def describe_code(text: str) -> tuple[str, str]:
    """``(kind, shown)``: kind is test_card, pass or other. A pass is a bearer credential,
    so only its first characters are shown; other codes up to a readable length."""
    if text.startswith(TEST_CARD_PREFIX):
        return "test_card", text
    if text.startswith(_PASS_PREFIXES):
        return "pass", text[:12] + "…"
    if len(text) > _SHOWN_CHARS:
        return "other", text[:_SHOWN_CHARS] + "…"
    return "other", text


def _what(kind: str, text: str, shown: str) -> str:
    if kind == "test_card":
        return "the test card"
    if kind == "pass":
        return f"a pass ({len(text)} characters)"
    return f"a code that is not a pass ({shown!r})"


def _say(options: CheckOptions, message: str) -> None:
    if options.prompt is not None:
        options.prompt(message)


class _FirstCode:
    """Collects the first code a source reports (callback from the source's thread)."""

    def __init__(self) -> None:
        self.text: str | None = None
        self.at: float | None = None
        self.event = threading.Event()

    def __call__(self, text: str, _method: str) -> None:
        if self.text is None:
            self.text, self.at = text, time.monotonic()
            self.event.set()


class _WatchedDecoder:
    """The configured decoder, remembering the read that passed and how the picture looked
    (a black or flat picture is a lens or light problem, not aim)."""

    def __init__(self, inner: Decoder) -> None:
        self.name = inner.name
        self._inner = inner
        self.read: DecodeResult | None = None
        self.brightness: float | None = None
        self.contrast: float | None = None

    def decode(self, gray: np.ndarray, fallback: bool = True) -> DecodeResult:
        result = self._inner.decode(gray, fallback)
        if result.texts and self.read is None:
            self.read = result
        sample = gray[::8, ::8]
        self.brightness, self.contrast = float(sample.mean()), float(sample.std())
        return result


# ---- camera ------------------------------------------------------------------------------------


def _device_path(device: int | str) -> str:
    return f"/dev/video{device}" if isinstance(device, int) else device


def camera_open_problem(device: int | str, error: object) -> tuple[str, str]:
    """``(cause, hint)`` when the camera gives no picture, by the likely cause."""
    path = _device_path(device)
    if not os.path.exists(path):
        return (f"{path} does not exist", "check the camera's cable and set [camera] device "
                "to its node (ls /dev/video*; a ribbon-cable CSI camera needs backend = "
                '"picamera2")')
    if not os.access(path, os.R_OK | os.W_OK):
        return (f"no permission to open {path}", "add the gate-agent user to the video group "
                "(sudo usermod -aG video gate-agent), then re-run")
    return (str(error or "no frame arrived"), f"stop the running gate (sudo systemctl stop "
            f"gate-agent) while checking, or set [camera] device to the camera's other node "
            f"(ls /dev/video*; {path} may not be a capture node)")


def picture_hint(brightness: float | None, contrast: float | None) -> str:
    """What to do when the camera gives frames but reads no code."""
    if brightness is not None and brightness < 25:
        return ("the picture is nearly black: remove the lens cap and light the reader "
                f"recess, then hold {CARD_HOW} at the reader and re-run")
    if contrast is not None and contrast < 4:
        return ("the picture is flat (covered lens or a blank surface): aim the camera at "
                f"where couriers hold their phones and hold {CARD_HOW} there, then re-run")
    return (f"hold {CARD_HOW} flat, 15-30 cm from the lens, where couriers hold their "
            "phones; if it is still not read, aim and focus the camera with `gate-agent "
            "decode --camera` (it shows what each frame holds) and re-run")


def check_camera(config: Config, options: CheckOptions) -> CheckResult:
    from hw.camera import CameraSource
    from hw.decoders import make_decoder

    device = config.camera.device
    seconds = options.scan_seconds
    data: dict[str, Any] = {"device": device}
    try:
        decoder = _WatchedDecoder(make_decoder(config.camera.decoder))
        source = CameraSource(camera_settings(config.camera), config.scanner.dedupe_s, decoder)
    except GateError as exc:
        return CheckResult("scanner", "fail", f"camera {device!r}: {exc}",
                           "fix [camera] backend / decoder as the message says", data)
    first = _FirstCode()
    _say(options, f"scanner: hold the test card in front of camera {device!r} now "
                  f"(up to {seconds:g} s)")
    started = time.monotonic()
    source.start(first)
    try:
        status = _wait_for_camera(source, first, started + seconds)
    finally:
        source.stop(2.0)
    frames = _count(status.get("frames"))
    data["frames"] = frames
    if not frames and config.camera.backend == "picamera2":
        return CheckResult("scanner", "fail", f"CSI camera gives no picture "
                           f"({status.get('last_error') or 'no frame arrived'})",
                           "check the ribbon cable (contacts facing the right way) and that "
                           "`rpicam-hello` shows a picture; stop the running gate first", data)
    if not frames:
        cause, hint = camera_open_problem(device, status.get("last_error"))
        return CheckResult("scanner", "fail", f"camera {device!r} gives no picture: {cause}",
                           hint, data)
    if first.text is None or first.at is None:
        data.update(brightness=_round(decoder.brightness), contrast=_round(decoder.contrast))
        return CheckResult("scanner", "fail", f"camera {device!r} gives frames ({frames}) but "
                           f"read no code in {seconds:g} s",
                           picture_hint(decoder.brightness, decoder.contrast), data)
    kind, shown = describe_code(first.text)
    read = decoder.read
    ms = round(read.ms, 1) if read is not None else None
    used = read.decoder if read is not None else decoder.name
    after = first.at - started
    data.update(code=kind, text=shown, chars=len(first.text), decoder=used, ms=ms,
                seconds=round(after, 2))
    return CheckResult("scanner", "pass", f"camera {device!r} read {_what(kind, first.text, shown)}"
                       f" after {after:.1f} s ({used}, {ms} ms decode, {frames} frame(s) seen)",
                       "" if kind == "test_card" else "the camera works; the test card proves "
                       "it at the size and distance of a courier's pass", data)


def _wait_for_camera(source: Any, first: _FirstCode, deadline: float) -> dict[str, object]:
    """Until a code is read, the window ends, or the camera failed before giving a frame
    (a device that does not open fails at once instead of after the whole window)."""
    while not first.event.wait(0.05):
        status: dict[str, object] = source.status()
        if time.monotonic() >= deadline:
            return status
        if not status.get("frames") and _count(status.get("reopens")) > 0:
            return status
    return dict(source.status())


def _count(value: object) -> int:
    return value if isinstance(value, int) else 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# ---- serial ------------------------------------------------------------------------------------


def serial_open_hint(port: str, code: int | None) -> str:
    """What to do when the serial port does not open, by errno."""
    if code == errno.ENOENT:
        return (f"{port} does not exist: plug the scanner in (check its cable) and set "
                "[serial] port to its name (ls /dev/serial/by-id/ /dev/ttyACM* /dev/ttyUSB*; "
                "a UART module is /dev/serial0); the gate-agent user must be in the dialout "
                "group")
    if code in (errno.EACCES, errno.EPERM):
        return (f"no permission to open {port}: add the gate-agent user to the dialout group "
                "(sudo usermod -aG dialout gate-agent), then re-run")
    if code in (errno.EAGAIN, errno.EBUSY):
        return (f"another program holds {port}: stop the running gate (sudo systemctl stop "
                "gate-agent) while checking")
    return (f"check the scanner's cable and [serial] port = {port!r} (ls /dev/serial/by-id/), "
            "and that the gate-agent user is in the dialout group")


def check_serial(config: Config, options: CheckOptions) -> CheckResult:
    import serial as pyserial

    from agent.protocol.qrtext import MAX_QR_TEXT
    from hw.serial_scanner import SerialSource

    port, baud, seconds = config.serial.port, config.serial.baud, options.scan_seconds
    data: dict[str, Any] = {"port": port, "baud": baud}
    try:  # the daemon opens it exclusively too: a running gate holding it shows here
        pyserial.Serial(port, baud, timeout=0.2, exclusive=True).close()
    except (pyserial.SerialException, OSError) as exc:
        code = getattr(exc, "errno", None)
        reason = os.strerror(code) if isinstance(code, int) else str(exc)
        return CheckResult("scanner", "fail", f"serial port {port} does not open ({reason})",
                           serial_open_hint(port, code), data)
    first = _FirstCode()
    source = SerialSource(serial_settings(config.serial), config.scanner.dedupe_s,
                          MAX_QR_TEXT + 2)  # as the daemon
    source.start(first)
    try:
        # The probe just opened it: a few seconds to reopen, apart from the scan window.
        started = _wait_running(source, first, time.monotonic() + 3.0)
        if started is not None:
            _say(options, f"scanner: scan the test card at the scanner on {port} now "
                          f"(up to {seconds:g} s)")
            first.event.wait(max(0.0, started + seconds - time.monotonic()))
        status = source.status()
    finally:
        source.stop(2.0)
    opened = f"{port} opens at {baud} baud"
    if started is None:
        return CheckResult("scanner", "fail", f"{opened} once, then fails "
                           f"({status.get('last_error')})", serial_open_hint(port, None), data)
    if first.text is None or first.at is None:
        return CheckResult("scanner", "pass", f"{opened}; no code scanned in {seconds:g} s",
                           "scan the test card during the check to see it read; if the module "
                           "beeps and nothing arrives, check [serial] baud and terminator", data)
    kind, shown = describe_code(first.text)
    after = max(0.0, first.at - started)
    data.update(code=kind, text=shown, chars=len(first.text), seconds=round(after, 2))
    return CheckResult("scanner", "pass", f"{opened}; read {_what(kind, first.text, shown)} "
                       f"after {after:.1f} s", "", data)


def _wait_running(source: Any, first: _FirstCode, deadline: float) -> float | None:
    """The time the source had the port open and was reading, or None if it never did."""
    while time.monotonic() < deadline:
        if source.status()["state"] == "running" or first.event.is_set():
            return time.monotonic()
        time.sleep(0.02)
    return None

