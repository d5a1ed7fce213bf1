"""The camera code source: OpenCV (USB/UVC) or picamera2 (CSI camera on Raspberry Pi OS).

Capture and decoding run in :class:`hw.frameloop.FrameLoop`, the same path the simulated
source uses. A camera that fails or disappears is reopened with backoff and reported in
``status()``; it never raises into the agent.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from agent.core.errors import HardwareError
from hw.decoders import Decoder
from hw.frameloop import FrameLoop, LoopSource
from hw.frames import ChangeGate, FramePipeline
from hw.settings import CameraSettings

# Consecutive failed reads before a camera is considered gone and reopened.
MAX_FAILED_READS = 30


class OpenCVCamera:
    """cv2.VideoCapture on a device index or path, buffer of one frame."""

    def __init__(self, camera: CameraSettings) -> None:
        import cv2

        self._cv2: Any = cv2
        self._camera = camera
        self._cap: Any = None
        self._failures = 0

    def open(self) -> None:
        cv2 = self._cv2
        device = self._camera.device
        cap = cv2.VideoCapture(device)
        if not cap.isOpened():
            cap.release()
            raise HardwareError(
                f"camera {device!r} cannot be opened: check the cable and that "
                "[camera] device names it (ls /dev/video*)"
            )
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._camera.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._camera.height)
        cap.set(cv2.CAP_PROP_FPS, self._camera.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap
        self._failures = 0

    def read(self) -> np.ndarray | None:
        while True:
            ok, frame = self._cap.read()
            if ok and frame is not None:
                self._failures = 0
                return frame
            self._failures += 1
            if self._failures >= MAX_FAILED_READS:
                raise HardwareError(
                    f"camera {self._camera.device!r} stopped delivering frames (unplugged?)"
                )

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class Picamera2Camera:
    """A CSI camera through picamera2/libcamera; the Y plane of YUV420 is the gray frame."""

    def __init__(self, camera: CameraSettings) -> None:
        if importlib.util.find_spec("picamera2") is None:
            raise HardwareError(
                '[camera] backend = "picamera2" but picamera2 is not installed: '
                "`sudo apt install python3-picamera2` (and create the venv with "
                '--system-site-packages), or use backend = "opencv" for a USB camera'
            )
        self._camera = camera
        self._cam: Any = None

    def open(self) -> None:
        from picamera2 import Picamera2

        cam = Picamera2()
        size = (self._camera.width, self._camera.height)
        config = cam.create_video_configuration(
            main={"size": size, "format": "YUV420"},
            controls={"FrameRate": float(self._camera.fps)},
        )
        cam.configure(config)
        cam.start()
        self._cam = cam

    def read(self) -> np.ndarray | None:
        yuv = self._cam.capture_array("main")
        return yuv[: self._camera.height, : self._camera.width]

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
            finally:
                self._cam.close()
                self._cam = None


def open_camera_reader(camera: CameraSettings) -> OpenCVCamera | Picamera2Camera:
    if camera.backend == "picamera2":
        return Picamera2Camera(camera)
    return OpenCVCamera(camera)


class CameraSource(LoopSource):
    """CodeSource for a live camera (method ``"camera"``)."""

    method = "camera"

    def __init__(
        self,
        camera: CameraSettings,
        dedupe_s: float,
        decoder: Decoder,
        change_gate: bool = True,
        backoff_s: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        pipeline = FramePipeline(decoder, dedupe_s, ChangeGate() if change_gate else None)
        self._loop = FrameLoop(
            open_camera_reader(camera),
            pipeline,
            self.method,
            "camera",
            pace_fps=None,
            reopen=True,
            backoff_s=backoff_s,
        )
