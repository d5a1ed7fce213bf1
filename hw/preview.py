"""The installer's preview: the frames the decoder sees, with the decoder's view drawn on.

:class:`FrameTap` sits in the decode thread (``FrameLoop.tap``): for each decoded frame
it keeps a reference to the newest one, at most ``max_fps`` a second and only while a
viewer asked for one recently, in one attribute assignment (no lock, no copy, no
encoding on the scan path). :func:`render_jpeg` runs on the web thread: scale to
~640 px wide, draw each code's outline, its shortened text and module size, the last
decision and the change gate's state, and encode a JPEG. The overlay's text is ASCII
glyphs drawn once at build time (``preview_font.npz``), so it is in English; the page
around it is bilingual.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hw.decoders import DecodeResult, Found

MIN_MODULE_PX = 4.0  # below this a code reads unreliably (docs/hardware.md)
OUTLINE = (0, 255, 0)  # BGR: pure green, a colour the clip and the scene never have
TOO_SMALL = (0, 140, 255)  # orange: found, but too few pixels per module


@dataclass(frozen=True)
class TapFrame:
    """One frame as the decode thread saw it, with the decoder's last answer on its scene."""

    frame: np.ndarray  # as captured (BGR or gray); nobody writes to it
    mono: float  # capture time (monotonic)
    result: DecodeResult | None  # last decode of this scene; None: nothing decoded yet
    gate: str  # change gate: moving | settled | refresh | unchanged | first | off
    seq: int


SLACK_S = 0.001  # frame times are floats: 0.2 s after t can compare below t + 0.2


class FrameTap:
    """Latest frame for the preview, taken from the decode thread at a low rate.

    ``want()`` (web thread) says a viewer is watching; without one for ``idle_after_s``
    the tap keeps nothing, so a gate nobody looks at pays two comparisons a frame.
    """

    def __init__(self, max_fps: float = 5.0, idle_after_s: float = 3.0) -> None:
        self._interval = 1.0 / max_fps
        self._idle_after = idle_after_s
        self._wanted_until = 0.0
        self._next = 0.0
        self._seq = 0
        self._latest: TapFrame | None = None

    def want(self) -> None:
        self._wanted_until = time.monotonic() + self._idle_after

    def offer(self, frame: np.ndarray, mono: float, result: DecodeResult | None,
              gate: str) -> None:
        """Decode thread: keep this frame if a viewer wants one and it is due."""
        if mono > self._wanted_until:
            if self._latest is not None:
                self._latest = None  # nobody watches: give the frame's memory back
            return
        if mono + SLACK_S < self._next:  # a frame due "now" may read a hair early
            return
        self._next = mono + self._interval
        self._seq += 1
        self._latest = TapFrame(frame, mono, result, gate, self._seq)

    def latest(self) -> TapFrame | None:
        return self._latest



@dataclass(frozen=True)
class Overlay:
    """What the gate knows besides the frame: the last decision, in short lines."""

    lines: tuple[str, ...] = ()


def shorten(text: str, keep: int = 14) -> str:
    """A code's text as the preview shows it: the start and its length (ASCII only)."""
    shown = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text[:keep])
    return shown if len(text) <= keep else f"{shown}... ({len(text)} chars)"


def describe(found: Found) -> dict[str, Any]:
    """One code as the page's status shows it (JSON)."""
    px = found.module_px()
    return {"text": shorten(found.text), "module_px": round(px, 1) if px else None,
            "too_small": px is not None and px < MIN_MODULE_PX,
            "corners": [list(c) for c in found.corners]}


def render_jpeg(tap: TapFrame, overlay: Overlay, width: int = 640, quality: int = 70) -> bytes:
    """The preview frame as JPEG bytes: scaled, outlined, annotated."""
    import cv2

    frame = tap.frame
    h, w = frame.shape[:2]
    scale = min(1.0, width / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR) if scale < 1 else frame
    view = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR) if small.ndim == 2 else small.copy()
    found = tap.result.found if tap.result is not None else ()
    for code in found:
        _draw_code(cv2, view, code, scale)
    lines = [*overlay.lines, _decoder_line(tap)]
    _draw_banner(cv2, view, lines)
    ok, data = cv2.imencode(".jpg", view, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode the preview frame as JPEG")
    return bytes(data.tobytes())


def _decoder_line(tap: TapFrame) -> str:
    result = tap.result
    if result is None:
        return f"change gate: {tap.gate}, nothing decoded yet"
    read = f"{len(result.found)} code(s) by {result.decoder}" if result.found else "no code"
    return f"change gate: {tap.gate}, last decode {result.ms:.1f} ms: {read}"


def _draw_code(cv2: Any, view: np.ndarray, code: Found, scale: float) -> None:
    points = np.array([[round(x * scale), round(y * scale)] for x, y in code.corners],
                      dtype=np.int32)
    px = code.module_px()
    small = px is not None and px < MIN_MODULE_PX
    colour = TOO_SMALL if small else OUTLINE
    cv2.polylines(view, [points.reshape(-1, 1, 2)], True, colour, 3, cv2.LINE_AA)
    x = int(points[:, 0].min())
    y = int(points[:, 1].max()) + 18
    if y > view.shape[0] - 4:
        y = max(14, int(points[:, 1].min()) - 8)
    size = f"{px:.1f} px/module" if px is not None else "module size unknown"
    _text(cv2, view, f"{shorten(code.text)}  {size}", (max(2, x), y), colour)
    if small:
        _text(cv2, view, "move the camera closer", (max(2, x), y + 18), TOO_SMALL)


def _draw_banner(cv2: Any, view: np.ndarray, lines: list[str]) -> None:
    height = 8 + 18 * len(lines)
    band = view[:height]
    band[:] = (band * 0.35).astype(np.uint8)  # darken behind the text: readable on any scene
    for n, line in enumerate(lines):
        _blit(view, line[:90], (6, 18 + 18 * n), (255, 255, 255))


def _text(cv2: Any, view: np.ndarray, text: str, at: tuple[int, int],
          colour: tuple[int, int, int]) -> None:
    """Text on a dark box, so it reads over the code and over any scene."""
    mask = _FONT.line(text)
    x, y = at
    cv2.rectangle(view, (x - 2, y - _FONT.ascent - 2),
                  (x + mask.shape[1] + 1, y + mask.shape[0] - _FONT.ascent), (20, 20, 20), -1)
    _blit(view, text, at, colour)


def _blit(view: np.ndarray, text: str, at: tuple[int, int],
          colour: tuple[int, int, int]) -> None:
    mask = _FONT.line(text)
    x, y = at[0], at[1] - _FONT.ascent
    h = min(mask.shape[0], view.shape[0] - y)
    w = min(mask.shape[1], view.shape[1] - x)
    if h <= 0 or w <= 0 or x < 0 or y < 0:
        return
    alpha = mask[:h, :w, None].astype(np.float32) / 255
    region = view[y:y + h, x:x + w]
    region[:] = (region * (1 - alpha) + np.array(colour, np.float32) * alpha).astype(np.uint8)


class _Glyphs:
    """ASCII glyphs drawn once by scripts/make_preview_font.py (putText would load
    OpenCV 5's font engine, ~9 MB, into the daemon); lines are cached by text."""

    def __init__(self) -> None:
        self._atlas: np.ndarray | None = None
        self._offsets: list[int] = []
        self.ascent = 12
        self._lines: dict[str, np.ndarray] = {}

    def _load(self) -> np.ndarray:
        if self._atlas is None:
            with np.load(Path(__file__).with_name("preview_font.npz")) as data:
                self._atlas = data["glyphs"]
                self._offsets = [int(v) for v in data["offsets"]]
                self.ascent = int(data["ascent"])
        return self._atlas

    def line(self, text: str) -> np.ndarray:
        mask = self._lines.get(text)
        if mask is None:
            atlas = self._load()
            parts = []
            for ch in text:
                code = ord(ch) - 32 if 32 <= ord(ch) < 127 else ord("?") - 32
                parts.append(atlas[:, self._offsets[code]:self._offsets[code + 1]])
            mask = np.concatenate(parts, axis=1) if parts else atlas[:, :0]
            if len(self._lines) > 64:
                self._lines.clear()
            self._lines[text] = mask
        return mask


_FONT = _Glyphs()
