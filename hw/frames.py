"""The one decode path every frame source shares: change gate, grayscale decode, de-duplication.

:class:`FramePipeline` turns one frame into the new texts it holds; the threads that feed
it (capture, decode) are :mod:`hw.frameloop`, the same for a camera and a simulated source.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hw.decoders import Decoder, DecodeResult
from hw.scans import Deduper

__all__ = ["ChangeGate", "Deduper", "FramePipeline", "PipelineStats", "Verdict"]

log = logging.getLogger(__name__)


Verdict = Literal["skip", "primary", "full"]


class ChangeGate:
    """Skip frames that did not change, without missing a phone held still.

    Compares a small thumbnail with the previous frame's: a frame is decoded while the
    scene moves, once more after motion settles (the phone is now still and sharp), and
    at least every ``refresh_s`` so a code that slid in slowly is still read.

    It also says which frames earn the decoder's costly fallback passes (``"full"``):
    the first frame and a settled one always; a moving scene at most once per
    ``fallback_interval_s`` (a trembling hand never settles); a periodic refresh only
    when the view drifted since the last full pass (a still, empty view was already
    tried: that keeps idle CPU at one cheap pass per refresh).
    """

    def __init__(
        self,
        size: tuple[int, int] = (160, 120),
        pixel_delta: int = 12,
        changed_fraction: float = 0.004,
        refresh_s: float = 2.0,
        fallback_interval_s: float = 1.0,
    ) -> None:
        import cv2

        self._cv2: Any = cv2
        self._size = size
        self._delta = pixel_delta
        self._fraction = changed_fraction
        self._refresh_s = refresh_s
        self._fallback_interval = fallback_interval_s
        self._previous: np.ndarray | None = None
        self._moving = False
        self._last_decode: float | None = None
        # Why the last frame was (not) decoded, for the installer's preview.
        self.last = "first"
        self._last_full: float | None = None
        self._full_thumb: np.ndarray | None = None

    def thumbnail(self, frame: np.ndarray) -> np.ndarray:
        """Gray thumbnail of a gray or BGR frame, without converting the full frame.

        Every 4th pixel (green channel for BGR), then an area average: still 16 samples per
        thumbnail pixel against sensor noise, at half the cost of resizing the full frame.
        """
        step = 4 if min(frame.shape[:2]) >= 4 * min(self._size) else 1
        small = frame[::step, ::step]
        if small.ndim == 3:
            small = small[..., 1]
        return self._cv2.resize(small, self._size, interpolation=self._cv2.INTER_AREA)

    def _differs(self, a: np.ndarray, b: np.ndarray) -> bool:
        if a.shape != b.shape:
            return True
        moved = int(np.count_nonzero(self._cv2.absdiff(a, b) > self._delta))
        return moved > self._fraction * a.size

    def changed(self, frame: np.ndarray) -> bool:
        """True when this frame differs from the previous one (updates the reference)."""
        thumb = self.thumbnail(frame)
        previous, self._previous = self._previous, thumb
        if previous is None:
            return False  # no reference yet; verdict decodes the first frame anyway
        return self._differs(thumb, previous)

    def should_decode(self, frame: np.ndarray, now: float) -> bool:
        return self.verdict(frame, now) != "skip"

    def verdict(self, frame: np.ndarray, now: float) -> Verdict:
        """``skip`` (no decode), ``primary`` (first pass only) or ``full`` (with fallbacks)."""
        changed = self.changed(frame)
        settled = self._moving and not changed
        self._moving = changed
        last = self._last_decode
        first = last is None
        due = last is None or now - last >= self._refresh_s
        self.last = ("moving" if changed else "settled" if settled else "refresh" if due
                     else "unchanged")
        if not (changed or settled or due):
            return "skip"
        self._last_decode = now
        thumb = self._previous
        assert thumb is not None
        if first or settled:
            full = True
        elif changed:
            full = self._last_full is None or now - self._last_full >= self._fallback_interval
        else:  # a periodic refresh of a view that looked still
            full = self._full_thumb is None or self._differs(thumb, self._full_thumb)
        if not full:
            return "primary"
        self._last_full = now
        self._full_thumb = thumb
        return "full"


@dataclass
class PipelineStats:
    frames: int = 0
    decoded: int = 0
    skipped: int = 0
    full: int = 0  # decodes allowed the fallback passes
    codes: int = 0
    duplicates: int = 0
    errors: int = 0
    last_decode_ms: float | None = None


class FramePipeline:
    """Frame -> grayscale -> change gate -> decoder -> de-duplication -> new texts."""

    def __init__(
        self,
        decoder: Decoder,
        dedupe_s: float,
        gate: ChangeGate | None,
        fallback_interval_s: float = 1.0,
    ) -> None:
        import cv2

        self._cv2: Any = cv2
        self._decoder = decoder
        self._gate = gate
        # Without a change gate every frame is decoded; fallbacks then at most this often.
        self._fallback_interval = fallback_interval_s
        self._last_full: float | None = None
        self._dedupe = Deduper(dedupe_s)
        self._lock = threading.Lock()
        self.stats = PipelineStats()
        # The decoder's last answer (it still holds while the change gate skips frames).
        self.last_result: DecodeResult | None = None

    @property
    def gate_state(self) -> str:
        """The change gate's verdict on the last frame (``off`` without a gate)."""
        return self._gate.last if self._gate is not None else "off"

    def gray(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim == 3:
            return self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2GRAY)
        return frame

    def process(self, frame: np.ndarray, now: float) -> list[str]:
        """Return the texts in this frame not already reported within the dedupe window."""
        fresh, hard = self.primary(frame, now)
        return self.fallback(hard, now) if hard is not None else fresh

    def primary(self, frame: np.ndarray, now: float) -> tuple[list[str], np.ndarray | None]:
        """The first pass only: (new texts, None), or ([], the gray frame) when the change
        gate granted this frame the fallback passes and the first pass read nothing;
        :meth:`fallback` runs them (hw.frameloop does, on a thread of its own)."""
        self.stats.frames += 1
        try:
            verdict = self._verdict(frame, now)
            if verdict == "skip":
                self.stats.skipped += 1
                return [], None
            gray = self.gray(frame)
            result = self._decoder.decode(gray, fallback=False)
        except Exception:  # an odd frame or a decoder bug must not kill the scanner thread
            self._failed()
            return [], None
        if not result.texts and verdict == "full":
            return [], gray
        return self._accept(result, now), None

    def fallback(self, gray: np.ndarray, now: float) -> list[str]:
        """Every pass of the decoder on a frame the first pass read nothing in (the first
        pass again too: any decoder's ``fallback=True`` is then exactly what it reads)."""
        try:
            result = self._decoder.decode(gray, fallback=True)
        except Exception:
            self._failed()
            return []
        return self._accept(result, now)

    def _failed(self) -> None:
        with self._lock:
            self.last_result = None
            self.stats.errors += 1
        log.exception("decoding a frame failed (decoder %s); frame skipped", self._decoder.name)

    def _accept(self, result: DecodeResult, now: float) -> list[str]:
        """Count the decode and keep the texts not seen within the dedupe window (two
        threads decode: the first pass and the fallbacks)."""
        with self._lock:
            self.stats.decoded += 1
            self.stats.last_decode_ms = result.ms
            self.last_result = result
            fresh = []
            for text in result.texts:
                if self._dedupe.accept(text, now):
                    fresh.append(text)
                else:
                    self.stats.duplicates += 1
            self.stats.codes += len(fresh)
            return fresh

    def _verdict(self, frame: np.ndarray, now: float) -> Verdict:
        if self._gate is not None:
            verdict = self._gate.verdict(frame, now)
            if verdict == "full":
                self.stats.full += 1
            return verdict
        if self._last_full is None or now - self._last_full >= self._fallback_interval:
            self._last_full = now
            self.stats.full += 1
            return "full"
        return "primary"
