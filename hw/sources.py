"""A simulated camera for the demo and tests: a video file or a folder of images at a set fps.

Frames go through the very same :class:`hw.frameloop.FrameLoop` and pipeline as the live
camera (change gate, grayscale decode, de-duplication); only the reader differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.core.errors import HardwareError
from hw.decoders import Decoder
from hw.frameloop import FrameLoop, LoopSource
from hw.frames import ChangeGate, FramePipeline

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


class VideoFileReader:
    """Frames of a video file (any container/codec OpenCV's build can read)."""

    def __init__(self, path: Path, loop: bool) -> None:
        import cv2

        self._cv2: Any = cv2
        self._path = path
        self._loop = loop
        self._cap: Any = None

    def _open_capture(self) -> Any:
        cap = self._cv2.VideoCapture(str(self._path))
        if not cap.isOpened():
            cap.release()
            raise HardwareError(
                f"{self._path}: OpenCV cannot read this video (try MJPG in .avi, or a "
                "folder of PNG images)"
            )
        return cap

    def open(self) -> None:
        self._cap = self._open_capture()

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if ok:
            return frame
        if not self._loop:
            return None
        self._cap.release()
        self._cap = self._open_capture()
        ok, frame = self._cap.read()
        return frame if ok else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderReader:
    """The images of a folder in name order (PNG, JPEG, WebP, BMP, TIFF)."""

    def __init__(self, path: Path, loop: bool) -> None:
        import cv2

        self._cv2: Any = cv2
        self._files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise HardwareError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in it")
        self._loop = loop
        self._index = 0

    def open(self) -> None:
        self._index = 0

    def read(self) -> np.ndarray | None:
        if self._index >= len(self._files):
            if not self._loop:
                return None
            self._index = 0
        path = self._files[self._index]
        self._index += 1
        frame = self._cv2.imread(str(path), self._cv2.IMREAD_COLOR)
        if frame is None:
            raise HardwareError(f"{path}: not a readable image")
        return frame

    def close(self) -> None:
        pass


def open_file_reader(path: Path, loop: bool) -> VideoFileReader | ImageFolderReader:
    if path.is_dir():
        return ImageFolderReader(path, loop)
    if path.is_file():
        return VideoFileReader(path, loop)
    raise HardwareError(f"{path} does not exist: give a video file or a folder of images")


class SimulatedSource(LoopSource):
    """CodeSource playing a file or folder at ``fps`` (method ``"sim"``).

    ``finished`` is set when a non-looping source has played and decoded its last frame.
    """

    method = "sim"

    def __init__(
        self,
        path: Path,
        fps: float,
        dedupe_s: float,
        decoder: Decoder,
        loop: bool = False,
        change_gate: bool = True,
    ) -> None:
        if fps <= 0:
            raise HardwareError(f"simulated source fps must be greater than 0, got {fps}")
        pipeline = FramePipeline(decoder, dedupe_s, ChangeGate() if change_gate else None)
        self._loop = FrameLoop(
            open_file_reader(path, loop), pipeline, self.method, "sim", pace_fps=fps
        )
