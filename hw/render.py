"""Camera-like synthetic frames holding QR codes, for the demo, tests and benchmarks.

Real phones at a gate give blur, tilt, glare, low contrast and dark-mode screens; these
helpers render those conditions reproducibly (seeded) so the decode path is exercised on
them and the demo can play a video without a camera.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

# The characters of QR alphanumeric mode, which base45 credential text uses.
ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def credential_like_text(length: int = 380, seed: int = 1) -> str:
    """A ``QM1:`` + base45-alphabet string of a real credential's size (QR version 10-12)."""
    rng = np.random.default_rng(seed)
    body = "".join(ALNUM[i] for i in rng.integers(0, len(ALNUM), length - 4))
    return "QM1:" + body


def qr_modules(text: str, error: str = "m") -> np.ndarray:
    """The code's module matrix (1 = dark), without quiet zone."""
    import segno

    qr = segno.make(text, error=error, micro=False, boost_error=False)
    return np.array([list(row) for row in qr.matrix], dtype=np.uint8)


def qr_image(text: str, module_px: int = 5, border: int = 4, error: str = "m") -> np.ndarray:
    """A clean grayscale image of the code (black on white) with a quiet zone."""
    modules = np.pad(qr_modules(text, error), border)
    image = np.where(modules == 1, 0, 255).astype(np.uint8)
    return np.kron(image, np.ones((module_px, module_px), dtype=np.uint8))


def scene(
    width: int = 1280, height: int = 720, seed: int = 0, level: int = 120, noise: float = 2.5
) -> np.ndarray:
    """A textured, slightly noisy background, like an empty view of the reader's recess."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.normal(level, 25, (max(2, height // 40), max(2, width // 40)))
    base = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    base = base + rng.normal(0, noise, (height, width))
    return np.clip(base, 0, 255).astype(np.uint8)


def place(
    frame: np.ndarray, code: np.ndarray, cx: int | None = None, cy: int | None = None
) -> np.ndarray:
    """Paste ``code`` into a copy of ``frame`` centred at (cx, cy) (default: the centre)."""
    out = frame.copy()
    h, w = code.shape
    cx = frame.shape[1] // 2 if cx is None else cx
    cy = frame.shape[0] // 2 if cy is None else cy
    y0, x0 = cy - h // 2, cx - w // 2
    out[y0 : y0 + h, x0 : x0 + w] = code
    return out


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(image, (0, 0), sigma)


def low_contrast(image: np.ndarray, dark: int = 95, light: int = 150) -> np.ndarray:
    scaled = dark + (image.astype(np.float32) / 255.0) * (light - dark)
    return scaled.astype(np.uint8)


def invert(image: np.ndarray) -> np.ndarray:
    """Dark mode: light modules on a dark screen."""
    return (255 - image).astype(np.uint8)


def tilt(image: np.ndarray, degrees: float, background: int = 255) -> np.ndarray:
    """Perspective of a phone tipped back by ``degrees`` about its horizontal axis."""
    import cv2

    h, w = image.shape
    shrink = np.sin(np.radians(degrees)) * 0.25 * w
    squash = np.cos(np.radians(degrees))
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    top = h * (1 - squash) / 2
    dst = np.array([[shrink, top], [w - shrink, top], [w, h - top], [0, h - top]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(image, matrix, (w, h), borderValue=background)


def glare(
    image: np.ndarray, strength: float = 0.75, radius_frac: float = 0.22, seed: int = 3
) -> np.ndarray:
    """A bright soft reflection on a phone screen, washing out part of the code."""
    rng = np.random.default_rng(seed)
    h, w = image.shape
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (radius_frac * min(h, w)) ** 2
    spot = np.exp(-r2) * 255 * strength
    return np.clip(image.astype(np.float32) + spot, 0, 255).astype(np.uint8)


def noisy(image: np.ndarray, sigma: float = 8.0, seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def write_video(frames: Iterable[np.ndarray], path: Path, fps: float) -> Path:
    """Write grayscale or BGR frames as MJPG in .avi (readable by opencv-python-headless)."""
    import cv2

    cv: Any = cv2  # VideoWriter_fourcc is missing from OpenCV's type stubs
    writer: Any = None
    try:
        for frame in frames:
            bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame
            if writer is None:
                h, w = bgr.shape[:2]
                writer = cv.VideoWriter(str(path), cv.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
                if not writer.isOpened():
                    raise RuntimeError(f"OpenCV cannot write MJPG video to {path}")
            writer.write(bgr)
    finally:
        if writer is not None:
            writer.release()
    return path


def mjpg_available(tmp_dir: Path) -> bool:
    """True when this OpenCV build can write and read back an MJPG .avi."""
    import cv2

    path = tmp_dir / "probe.avi"
    try:
        write_video([np.zeros((32, 32), np.uint8)] * 2, path, 5)
    except RuntimeError:
        return False
    cap = cv2.VideoCapture(str(path))
    ok = cap.isOpened() and cap.read()[0]
    cap.release()
    path.unlink(missing_ok=True)
    return bool(ok)
