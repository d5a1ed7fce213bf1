"""Render codes into a video clip (MJPG .avi) or, without a codec, a folder of PNG frames.

Like the daemon, this is tooling around the hardware layer, so it uses OpenCV (imported
lazily) to draw and write frames; the scan path itself never sees anything but frames.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import segno

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shot:
    text: str | None  # None: an empty scene
    seconds: float
    label: str = ""


def schedule(codes: Sequence[tuple[str, str]], show_s: float = 1.0, gap_s: float = 1.6,
             lead_s: float = 0.5) -> list[Shot]:
    """Each (label, text) shown for ``show_s`` with an empty scene of ``gap_s`` after it."""
    shots = [Shot(None, lead_s)]
    for label, text in codes:
        shots += [Shot(text, show_s, label), Shot(None, gap_s)]
    return shots


def qr_image(text: str, target_px: int) -> np.ndarray:
    """A black-on-white QR (EC level M, quiet zone) scaled by whole modules to ~target_px."""
    qr = segno.make(text, error="m", micro=False)
    rows = [list(row) for row in qr.matrix_iter(scale=1, border=4)]
    modules = np.array(rows, dtype=np.uint8)
    scale = max(4, target_px // modules.shape[0])
    big = np.kron(modules, np.ones((scale, scale), dtype=np.uint8))
    return np.where(big > 0, 0, 255).astype(np.uint8)


def render_frame(shot: Shot, width: int, height: int, cv2: Any) -> np.ndarray:
    frame = np.full((height, width, 3), 70, dtype=np.uint8)
    if shot.text is not None:
        code = qr_image(shot.text, int(height * 0.8))
        h, w = code.shape
        h, w = min(h, height), min(w, width)
        y, x = (height - h) // 2, (width - w) // 2
        frame[y:y + h, x:x + w] = code[:h, :w, None]
    if shot.label:
        cv2.putText(frame, shot.label, (16, height - 16), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                    (255, 255, 255), 2)
    return frame


def write_clip(shots: Sequence[Shot], folder: Path, *, fps: float = 10.0, width: int = 1280,
               height: int = 720, prefer_video: bool = True) -> Path:
    """Write the shots to ``folder/clip.avi`` (MJPG) or ``folder/frames/`` and return it."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    frames: list[np.ndarray] = []
    for shot in shots:
        frame = render_frame(shot, width, height, cv2)
        frames += [frame] * max(1, round(shot.seconds * fps))
    if prefer_video:
        path = folder / "clip.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps,
                                 (width, height))
        if writer.isOpened():
            for frame in frames:
                writer.write(frame)
            writer.release()
            if _readable(path, cv2):
                return path
        writer.release()
        log.warning("no MJPG codec in this OpenCV build: writing PNG frames instead")
    out = folder / "frames"
    out.mkdir(exist_ok=True)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(out / f"{index:05d}.png"), frame)
    return out


def _readable(path: Path, cv2: Any) -> bool:
    cap = cv2.VideoCapture(str(path))
    try:
        ok, _ = cap.read()
        return bool(ok)
    finally:
        cap.release()
