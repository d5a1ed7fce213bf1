"""The preview's tap on the decode thread and the overlay it draws, on rendered frames."""

from __future__ import annotations

import time

import cv2
import numpy as np

from hw import render
from hw.decoders import PyzbarDecoder, ZxingDecoder, make_decoder
from hw.preview import FrameTap, Overlay, TapFrame, render_jpeg


def _frame(module_px: int, at: tuple[int, int] = (300, 120)) -> tuple[np.ndarray, int]:
    code = render.qr_image(render.credential_like_text(300), module_px)
    frame = np.full((720, 1280, 3), 90, np.uint8)
    y, x = at
    frame[y:y + code.shape[0], x:x + code.shape[1]] = code[..., None]
    return frame, code.shape[0]


def _decoded(frame: np.ndarray) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_COLOR)


def _mask(view: np.ndarray, bgr: tuple[int, int, int]) -> np.ndarray:
    return np.all(np.abs(view.astype(int) - bgr) < 60, axis=2)


def test_decoders_say_where_the_code_is_and_how_many_pixels_a_module_has() -> None:
    frame, size = _frame(module_px=5)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    border = 4 * 5
    for decoder in (ZxingDecoder(), PyzbarDecoder()):
        found = decoder.decode(gray).found
        assert len(found) == 1, decoder.name
        xs = [c[0] for c in found[0].corners]
        ys = [c[1] for c in found[0].corners]
        assert abs(min(xs) - (120 + border)) <= 6 and abs(max(xs) - (120 + size - border)) <= 6
        assert abs(min(ys) - (300 + border)) <= 6 and abs(max(ys) - (300 + size - border)) <= 6
    zxing = ZxingDecoder().decode(gray).found[0]
    assert zxing.module_px() is not None and abs(zxing.module_px() - 5) < 0.3


def test_overlay_outlines_the_code_in_green_on_the_scaled_preview() -> None:
    frame, size = _frame(module_px=5)
    result = make_decoder().decode(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    view = _decoded(render_jpeg(TapFrame(frame, 0.0, result, "settled", 1),
                                Overlay(("last scan: DENIED malformed",))))
    assert view.shape == (360, 640, 3)
    green = _mask(view, (0, 255, 0))
    ys, xs = np.nonzero(green)
    # Scaled by 0.5: the code's modules span 70..70+(size-40)/2 across, 160.. down.
    assert abs(xs.min() - (120 + 20) / 2) <= 5 and abs(ys.min() - (300 + 20) / 2) <= 5
    assert green[(300 + 20) // 2 + 15:(300 + size - 20) // 2 - 15,
                 (120 + 20) // 2 + 15:(120 + size - 20) // 2 - 15].sum() == 0
    assert not _mask(view, (0, 140, 255)).any()  # big enough: no "move closer" colour


def test_a_code_under_4_px_per_module_is_drawn_in_the_warning_colour() -> None:
    frame, _ = _frame(module_px=3)
    result = make_decoder().decode(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    assert result.found and result.found[0].module_px() < 4
    view = _decoded(render_jpeg(TapFrame(frame, 0.0, result, "moving", 1), Overlay()))
    assert _mask(view, (0, 140, 255)).sum() > 200
    assert not _mask(view, (0, 255, 0)).any()


def test_no_code_no_outline() -> None:
    frame = np.full((720, 1280, 3), 90, np.uint8)
    result = make_decoder().decode(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    view = _decoded(render_jpeg(TapFrame(frame, 0.0, result, "refresh", 1), Overlay()))
    assert not _mask(view, (0, 255, 0)).any()


def test_tap_keeps_frames_only_for_a_viewer_and_at_most_5_a_second() -> None:
    tap = FrameTap(max_fps=5.0, idle_after_s=3.0)
    frame = np.zeros((4, 4), np.uint8)
    start = time.monotonic()
    for n in range(15):  # one second of a 15 fps camera, nobody watching
        tap.offer(frame, start + n / 15, None, "moving")
    assert tap.latest() is None
    tap.want()
    now = time.monotonic()
    kept = set()
    for n in range(30):  # two seconds at 15 fps with a viewer
        tap.offer(frame, now + n / 15, None, "moving")
        latest = tap.latest()
        assert latest is not None
        kept.add(latest.seq)
    assert len(kept) == 10
    tap.offer(frame, now + 10.0, None, "moving")  # the viewer left: the frame is let go
    assert tap.latest() is None
