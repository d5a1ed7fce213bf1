"""The one decode path every frame source shares: change gate, grayscale decode, de-duplication.

A camera and a simulated source (video file, image folder) differ only in where frames
come from (a :class:`FrameReader`); :class:`FrameLoop` runs the same two threads for both:
a capture thread that keeps only the newest frame (a slow decode never builds a backlog
of stale frames) and a decode thread that runs :class:`FramePipeline` on it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from agent.core.backoff import Backoff
from agent.core.events import Scan
from hw.decoders import Decoder, DecodeResult
from hw.scans import Deduper, OnCode, OnScan, adapt_on_code

if TYPE_CHECKING:
    from hw.preview import FrameTap

__all__ = ["ChangeGate", "Deduper", "FrameLoop", "FramePipeline", "LoopSource", "OnCode",
           "OnScan", "adapt_on_code"]

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
        self.stats.frames += 1
        try:
            verdict = self._verdict(frame, now)
            if verdict == "skip":
                self.stats.skipped += 1
                return []
            result = self._decoder.decode(self.gray(frame), fallback=verdict == "full")
        except Exception:  # an odd frame or a decoder bug must not kill the scanner thread
            self.last_result = None
            self.stats.errors += 1
            log.exception("decoding a frame failed (decoder %s); frame skipped",
                          self._decoder.name)
            return []
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


class FrameReader(Protocol):
    """Where frames come from. ``read`` returns None at the end of a file (never for a camera)."""

    def open(self) -> None: ...

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


class EndOfFrames(Exception):
    """A finite reader has no more frames."""


class LatestFrame:
    """A one-slot mailbox: a new frame replaces an unread one (counted as dropped)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: tuple[np.ndarray, float] | None = None
        self._closed = False
        self.dropped = 0

    def put(self, frame: np.ndarray, mono: float) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = (frame, mono)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, timeout: float) -> tuple[np.ndarray, float] | None:
        """The newest frame, or None when closed and empty (or on timeout)."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None or self._closed, timeout)
            frame, self._frame = self._frame, None
            return frame

    @property
    def closed(self) -> bool:
        return self._closed


class FrameLoop:
    """Capture thread + decode thread around a reader, shared by camera and simulated sources.

    ``pace_fps`` paces a file reader to real time (None for a camera, which paces itself).
    ``reopen`` keeps retrying a failing reader with exponential backoff (camera) instead
    of ending (files). ``finished`` is set once a finite reader is exhausted and its last
    frame decoded. Each reported :class:`Scan` carries ``mono`` = the monotonic time the
    frame holding the code was captured, for scan-to-unlock latency.
    """

    def __init__(
        self,
        reader: FrameReader,
        pipeline: FramePipeline,
        method: str,
        name: str,
        pace_fps: float | None = None,
        reopen: bool = False,
        backoff_s: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self._reader = reader
        self._pipeline = pipeline
        self._method = method
        self._name = name
        self._pace = pace_fps
        self._reopen = reopen
        self._backoff = backoff_s
        self._stop = threading.Event()
        self._slot = LatestFrame()
        self._threads: list[threading.Thread] = []
        self._on_scan: OnScan | None = None
        self.finished = threading.Event()
        self.state = "stopped"
        self.reopens = 0
        self.last_error: str | None = None
        self._delivered = False  # the reader delivered a frame since it was last opened
        # The installer page's preview: offered every decoded frame, keeps a few a second.
        self.tap: FrameTap | None = None

    def start(self, on_scan: OnScan) -> None:
        if self._threads:
            raise RuntimeError(f"{self._name} already started")
        self._on_scan = on_scan
        self.state = "starting"
        self._threads = [
            threading.Thread(target=self._capture, name=f"{self._name}-capture", daemon=True),
            threading.Thread(target=self._decode, name=f"{self._name}-decode", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._slot.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("thread %s did not stop within %.1f s", thread.name, timeout)
        if self.state != "finished":
            self.state = "stopped"

    def _reported_state(self) -> str:
        """``failed`` when the decode thread died while we still claim to run: a blind
        scanner must not look healthy (the daemon's supervisor restarts ``failed``)."""
        decode_dead = len(self._threads) == 2 and not self._threads[1].is_alive()
        if self.state in ("running", "reopening", "starting") and decode_dead:
            return "failed"
        return self.state

    def status(self) -> dict[str, object]:
        s = self._pipeline.stats
        return {
            "method": self._method,
            "state": self._reported_state(),
            "frames": s.frames,
            "decoded": s.decoded,
            "skipped": s.skipped,
            "dropped": self._slot.dropped,
            "codes": s.codes,
            "duplicates": s.duplicates,
            "decode_errors": s.errors,
            "last_decode_ms": s.last_decode_ms,
            "reopens": self.reopens,
            "last_error": self.last_error,
        }

    def _capture(self) -> None:
        backoff = Backoff(*self._backoff)
        try:
            while not self._stop.is_set():
                self._delivered = False
                try:
                    self._reader.open()
                    self.state = "running"
                    self.last_error = None
                    self._pump()
                    return  # end of a finite reader, or stopping
                except EndOfFrames:
                    return
                except Exception as exc:  # camera gone, unreadable file: never crash the agent
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._safe_close()
                    if not self._reopen:
                        log.error("%s stopped: %s", self._name, self.last_error)
                        return
                    if self._delivered:  # it worked for a while: a fresh failure
                        backoff.reset()
                    # A device that opens but never delivers a frame backs off like one
                    # that does not open at all (no tight reopen loop filling the journal).
                    delay = backoff.next_delay()
                    self.state = "reopening"
                    self.reopens += 1
                    log.warning(
                        "%s failed (%s); reopening in %.1f s", self._name, self.last_error, delay
                    )
                    if self._stop.wait(delay):
                        return
        finally:
            self._safe_close()
            self._slot.close()

    def _pump(self) -> None:
        interval = 1.0 / self._pace if self._pace else 0.0
        next_at = time.monotonic()
        while not self._stop.is_set():
            frame = self._reader.read()
            if frame is None:
                raise EndOfFrames
            self._delivered = True
            self._slot.put(frame, time.monotonic())
            if interval:
                next_at += interval
                wait = next_at - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                if wait < -1.0:  # fell far behind: restart the schedule instead of bursting
                    next_at = time.monotonic()

    def _safe_close(self) -> None:
        try:
            self._reader.close()
        except Exception as exc:
            log.warning("%s: closing the reader failed: %s", self._name, exc)

    def _decode(self) -> None:
        assert self._on_scan is not None
        while True:
            item = self._slot.take(timeout=0.5)
            if item is None:
                if self._slot.closed or self._stop.is_set():
                    break
                continue
            frame, mono = item
            texts = self._pipeline.process(frame, mono)
            if texts:
                # One frame, one scan: the first code in decoder order; the rest ride along
                # to be recorded as ignored (agent.core.events.Scan).
                scan = Scan(text=texts[0], method=self._method, at=time.time(), mono=mono,
                            others=tuple(texts[1:]))
                try:
                    self._on_scan(scan)
                except Exception:
                    log.exception("%s: the scan callback failed", self._name)
            tap = self.tap  # after the scan went out: the preview never delays one
            if tap is not None:
                tap.offer(frame, mono, self._pipeline.last_result, self._pipeline.gate_state)
        if self.state != "reopening":
            self.state = "finished" if not self._stop.is_set() else "stopped"
        self.finished.set()


class LoopSource:
    """agent.core.ports.CodeSource over a :class:`FrameLoop`: what the camera and the
    simulated source share (subclasses build ``_loop``)."""

    _loop: FrameLoop

    @property
    def finished(self) -> threading.Event:
        """Set once a finite source has played and decoded its last frame."""
        return self._loop.finished

    def start(self, on_code: OnCode) -> None:
        self._loop.start(adapt_on_code(on_code))

    def start_scans(self, on_scan: OnScan) -> None:
        """Like :meth:`start`, but hands over full Scan events (``mono`` = frame capture time)."""
        self._loop.start(on_scan)

    def stop(self, timeout: float = 2.0) -> None:
        self._loop.stop(timeout)

    def status(self) -> dict[str, object]:
        return self._loop.status()

    def attach_tap(self, tap: FrameTap) -> None:
        """Let the installer's preview see the frames this source decodes (hw.preview)."""
        self._loop.tap = tap
