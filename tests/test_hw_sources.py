"""Camera path from real files: MJPG videos written with cv2.VideoWriter and image folders,
played through the same change gate / decode / de-duplication as the live camera."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.core.events import Scan
from hw import render
from hw.camera import CameraSource
from hw.decoders import make_decoder
from hw.frames import ChangeGate, Deduper, FramePipeline
from hw.settings import CameraSettings
from hw.sources import SimulatedSource
from tests.conftest import require

W, H = 640, 480
SCENE = render.scene(W, H)
CODE_A = render.qr_image("QM1:COURIER-A", module_px=6)
CODE_B = render.qr_image("QM1:COURIER-B", module_px=6)


def frames_with(code: np.ndarray, n: int, jitter: bool = False) -> list[np.ndarray]:
    out = []
    for i in range(n):
        dx = (i % 3) * 4 if jitter else 0
        out.append(render.place(SCENE, code, cx=W // 2 + dx))
    return out


def collect(source: SimulatedSource, timeout: float = 30.0) -> list[Scan]:
    scans: list[Scan] = []
    lock = threading.Lock()

    def on_scan(scan: Scan) -> None:
        with lock:
            scans.append(scan)

    source.start_scans(on_scan)
    try:
        assert source.finished.wait(timeout), "simulated source did not finish"
    finally:
        source.stop()
    return scans


@pytest.fixture
def video_ok(tmp_path: Path) -> None:
    require(
        render.mjpg_available(tmp_path),
        "an OpenCV build that writes and reads MJPG .avi",
        "pip install opencv-python-headless",
    )


def test_video_held_code_is_one_scan_and_two_couriers_are_two(
    tmp_path: Path, video_ok: None
) -> None:
    frames = (
        [SCENE] * 5
        + frames_with(CODE_A, 20, jitter=True)
        + [SCENE] * 5
        + frames_with(CODE_B, 20)
        + [SCENE] * 3
    )
    video = render.write_video(frames, tmp_path / "gate.avi", fps=15)
    source = SimulatedSource(video, 200, 3.0, make_decoder("auto"))
    scans = collect(source)
    assert [s.text for s in scans] == ["QM1:COURIER-A", "QM1:COURIER-B"]
    assert all(s.method == "sim" for s in scans)
    status = source.status()
    assert status["codes"] == 2
    assert status["state"] == "finished"


def test_same_code_again_after_the_window_is_a_new_scan(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    sequence = [CODE_A] * 3 + [None] * 2 + [CODE_A] * 3
    for i, code in enumerate(sequence):
        image = SCENE if code is None else render.place(SCENE, code)
        cv2.imwrite(str(folder / f"{i:03d}.png"), image)
    # dedupe 0: every reappearance after leaving the view is a new scan
    source = SimulatedSource(folder, 25, 0.0, make_decoder("auto"))  # no frame dropped
    texts = [s.text for s in collect(source)]
    assert texts.count("QM1:COURIER-A") >= 2


def test_static_code_is_still_read_with_the_change_gate(tmp_path: Path) -> None:
    """A phone already still in view from the first frame: decoded, then frames skipped."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(30):
        cv2.imwrite(str(folder / f"{i:03d}.png"), render.place(SCENE, CODE_A))
    source = SimulatedSource(folder, 200, 3.0, make_decoder("auto"))
    assert [s.text for s in collect(source)] == ["QM1:COURIER-A"]
    status = source.status()
    assert status["skipped"] > 0  # identical frames were not decoded again


def test_scan_mono_is_the_frame_capture_time(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), render.place(SCENE, CODE_A))
    source = SimulatedSource(folder, 10, 3.0, make_decoder("auto"))
    import time

    before = time.monotonic()
    scans = collect(source)
    assert len(scans) == 1
    assert before <= scans[0].mono <= time.monotonic()


def test_start_with_on_code_callback(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), render.place(SCENE, CODE_B))
    source = SimulatedSource(folder, 10, 3.0, make_decoder("auto"))
    got: list[tuple[str, str]] = []
    source.start(lambda text, method: got.append((text, method)))
    assert source.finished.wait(10)
    source.stop()
    assert got == [("QM1:COURIER-B", "sim")]


def test_looping_source_runs_until_stopped(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), SCENE)
    source = SimulatedSource(folder, 50, 3.0, make_decoder("auto"), loop=True)
    source.start(lambda text, method: None)
    assert not source.finished.wait(0.3)
    source.stop()
    assert source.status()["frames"] > 1


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    from agent.core.errors import HardwareError

    with pytest.raises(HardwareError, match="does not exist"):
        SimulatedSource(tmp_path / "nope", 10, 3.0, make_decoder("auto"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(HardwareError, match="no images"):
        SimulatedSource(tmp_path / "empty", 10, 3.0, make_decoder("auto"))


def test_callback_error_does_not_stop_the_source(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, code in enumerate([CODE_A, None, CODE_B]):
        cv2.imwrite(str(folder / f"{i}.png"), SCENE if code is None else render.place(SCENE, code))
    source = SimulatedSource(folder, 20, 3.0, make_decoder("auto"))
    seen: list[str] = []

    def explode(text: str, method: str) -> None:
        seen.append(text)
        raise RuntimeError("controller queue full")

    source.start(explode)
    assert source.finished.wait(10)
    source.stop()
    assert seen == ["QM1:COURIER-A", "QM1:COURIER-B"]


def test_missing_camera_is_reopened_with_backoff_and_never_raises(tmp_path: Path) -> None:
    camera = CameraSettings(device=str(tmp_path / "video9"))
    source = CameraSource(camera, 3.0, make_decoder("auto"), backoff_s=(0.01, 0.05))
    source.start(lambda text, method: None)
    try:
        deadline = threading.Event()
        for _ in range(100):
            if int(source.status()["reopens"]) >= 3:  # type: ignore[call-overload]
                break
            deadline.wait(0.05)
        status = source.status()
        assert status["state"] == "reopening"
        assert int(status["reopens"]) >= 3  # type: ignore[call-overload]
        assert "cannot be opened" in str(status["last_error"])
    finally:
        source.stop()
    assert source.status()["state"] == "stopped"


def test_change_gate_skips_still_frames_decodes_after_motion_and_periodically() -> None:
    gate = ChangeGate(refresh_s=1.0)
    still = SCENE
    moved = render.place(SCENE, CODE_A)
    assert gate.should_decode(still, 0.0)  # first frame
    assert not gate.should_decode(still, 0.1)
    assert gate.should_decode(moved, 0.2)  # motion
    assert gate.should_decode(moved, 0.3)  # settled: one more decode of the still phone
    assert not gate.should_decode(moved, 0.4)
    assert gate.should_decode(moved, 1.4)  # periodic refresh


def test_change_gate_grants_fallback_passes_only_to_new_views() -> None:
    """The costly fallback passes: first and settled frames; a moving scene at most once
    per interval; a periodic refresh of an already-tried still view never."""
    gate = ChangeGate(refresh_s=1.0, fallback_interval_s=0.5)
    moved = render.place(SCENE, CODE_A)
    assert gate.verdict(SCENE, 0.0) == "full"  # first frame
    assert gate.verdict(SCENE, 1.0) == "primary"  # refresh of the same still view
    assert gate.verdict(SCENE, 2.0) == "primary"
    assert gate.verdict(moved, 2.1) == "full"  # motion, first time in the interval
    assert gate.verdict(SCENE, 2.2) == "primary"  # still moving, within the interval
    assert gate.verdict(SCENE, 2.3) == "full"  # settled: the still, sharp frame
    assert gate.verdict(SCENE, 2.4) == "skip"
    assert gate.verdict(moved, 2.5) == "primary"  # moving again, 0.2 s after the last full
    assert gate.verdict(SCENE, 2.8) == "full"  # moving, the interval has passed


def test_change_gate_refresh_tries_fallbacks_when_the_view_drifted_slowly() -> None:
    """A code that slid in too slowly to count as motion gets the full passes at refresh."""
    gate = ChangeGate(refresh_s=1.0)
    assert gate.verdict(SCENE, 0.0) == "full"
    slid = render.place(SCENE, CODE_A)
    gate._previous = gate.thumbnail(slid)  # the slow slide: every step below the threshold
    assert gate.verdict(slid, 1.0) == "full"
    assert gate.verdict(slid, 2.0) == "primary"


def test_idle_stream_runs_the_fallback_once() -> None:
    """A static camera view: one full decode, then only cheap first passes at refresh."""
    pipeline = FramePipeline(make_decoder("auto"), 3.0, ChangeGate(refresh_s=0.5))
    for i in range(40):
        pipeline.process(SCENE, i / 15)
    assert pipeline.stats.decoded == 5 and pipeline.stats.full == 1  # 0, 0.53, ... 2.13 s


def test_change_gate_ignores_sensor_noise() -> None:
    gate = ChangeGate()
    rng = np.random.default_rng(7)
    gate.should_decode(SCENE, 0.0)
    noisy = np.clip(SCENE + rng.normal(0, 3, SCENE.shape), 0, 255).astype(np.uint8)
    assert not gate.changed(noisy)


def test_deduper_window_slides_while_the_code_stays_in_view() -> None:
    d = Deduper(3.0)
    assert d.accept("A", 0.0)
    assert not d.accept("A", 2.0)
    assert not d.accept("A", 4.5)  # seen 2.5 s ago: still the same presentation
    assert d.accept("B", 4.6)
    assert d.accept("A", 8.0)  # gone for 3.5 s: a new scan


class UnpluggableCamera:
    """A FrameReader that behaves like a USB camera pulled out and plugged back in.

    ``script`` lists what each ``open()`` does: an int n = open fine and deliver n frames
    (then the read fails as on unplug); "fail" = open fails; "code" = deliver frames
    showing CODE_A until closed.
    """

    def __init__(self, script: list[object]) -> None:
        self._script = list(script)
        self._mode: object = None
        self._left = 0
        self.opens = 0

    def open(self) -> None:
        self.opens += 1
        self._mode = self._script.pop(0) if self._script else "code"
        if self._mode == "fail":
            raise OSError("no such device")
        self._left = self._mode if isinstance(self._mode, int) else 0

    def read(self) -> np.ndarray | None:
        threading.Event().wait(0.005)  # a camera delivers at its own pace
        if self._mode == "code":
            return render.place(SCENE, CODE_A)
        if self._left <= 0:
            raise OSError("camera stopped delivering frames (unplugged?)")
        self._left -= 1
        return np.zeros((0, 0), np.uint8) if self._left == 0 else SCENE  # odd last frame

    def close(self) -> None:
        self._mode = None


def test_camera_unplugged_mid_stream_is_reopened_and_scans_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from hw.frameloop import FrameLoop

    reader = UnpluggableCamera([5, "fail", "fail", 0, 0, 0, "code"])
    pipeline = FramePipeline(make_decoder("auto"), 3.0, ChangeGate())
    loop = FrameLoop(reader, pipeline, "camera", "camera", reopen=True, backoff_s=(0.05, 0.4))
    got: list[Scan] = []
    seen = threading.Event()

    def on_scan(scan: Scan) -> None:
        got.append(scan)
        seen.set()

    with caplog.at_level("WARNING", logger="hw.frameloop"):
        loop.start(on_scan)
        try:
            assert seen.wait(20), f"no scan after reopening: {loop.status()}"
        finally:
            loop.stop()
    assert [s.text for s in got] == ["QM1:COURIER-A"]
    status = loop.status()
    assert status["reopens"] == 6 and reader.opens == 7
    # The empty frame before the unplug was skipped as an error, not fatal to decoding.
    assert int(status["decode_errors"]) >= 1  # type: ignore[call-overload]
    # Opens that deliver nothing back off like failed opens: the delay grows to the cap.
    delays = [float(r.getMessage().rsplit(" in ", 1)[1].split()[0])
              for r in caplog.records if "reopening in" in r.getMessage()]
    assert delays[-1] > delays[1]


class _EscapedBug(BaseException):
    """Something a plain ``except Exception`` does not stop (a bug, an interpreter error)."""


def test_a_dead_decode_thread_reports_failed_not_running(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), render.place(SCENE, CODE_A))
    source = SimulatedSource(folder, 20, 3.0, make_decoder("auto"), loop=True)
    died = threading.Event()

    def escape(scan: Scan) -> None:
        died.set()
        raise _EscapedBug

    threading.excepthook, saved = (lambda args: None), threading.excepthook
    try:
        source.start_scans(escape)
        assert died.wait(10)
        for _ in range(100):
            if source.status()["state"] == "failed":
                break
            threading.Event().wait(0.05)
        assert source.status()["state"] == "failed"
    finally:
        threading.excepthook = saved
        source.stop()


HARD_TEXT = render.credential_like_text()


def _hard_frame(scene: np.ndarray) -> np.ndarray:
    """A credential-sized code only the fallback passes read (2.5 px per module, blurred)."""
    from hw.decoders import ZxingDecoder

    code = render.blur(render.qr_image(HARD_TEXT, module_px=3), 1.4)
    frame = render.place(scene, cv2.resize(code, None, fx=0.85, fy=0.85))
    if ZxingDecoder().decode(frame).texts:
        pytest.fail("the frame no longer needs the fallback passes: make it harder")
    return frame


def test_a_code_only_the_fallbacks_read_is_scanned_before_the_stream_finishes(
        tmp_path: Path) -> None:
    """The fallback passes run on their own thread; the source is finished only once
    they are done with the last frame (the demo and the benchmark stop on finished)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), _hard_frame(render.scene(1280, 720)))
    source = SimulatedSource(folder, 10, 3.0, make_decoder("auto"))
    scans = collect(source)
    assert [s.text for s in scans] == [HARD_TEXT]
    assert source.status()["state"] == "finished"


def test_codes_read_by_the_first_pass_and_by_the_fallbacks_keep_their_frames_times(
        tmp_path: Path) -> None:
    """A frame the first pass read nothing in goes to the fallback thread while the next
    frames, an easy code, are read by the first pass: both codes are scanned, each with
    its own frame's capture time (scan-to-unlock is measured from it)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    scene = render.scene(1280, 720)
    cv2.imwrite(str(folder / "0.png"), _hard_frame(scene))
    for i in range(1, 4):
        cv2.imwrite(str(folder / f"{i}.png"), render.place(scene, CODE_A))
    source = SimulatedSource(folder, 100, 3.0, make_decoder("auto"))
    scans = {s.text: s for s in collect(source)}
    assert sorted(scans) == sorted(["QM1:COURIER-A", HARD_TEXT])
    assert scans[HARD_TEXT].mono < scans["QM1:COURIER-A"].mono
