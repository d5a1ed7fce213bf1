"""The threads around a frame source: capture keeps the newest frame, decode reads it.

A camera and a simulated source (video file, image folder) differ only in where frames
come from (a :class:`FrameReader`); :class:`FrameLoop` runs the same threads for both:
a capture thread that keeps only the newest frame (a slow decode never builds a backlog
of stale frames), a decode thread that runs the first pass of
:class:`hw.frames.FramePipeline` on it, and a fallback thread, at a lower CPU priority,
for the costly fallback passes on a frame the first pass read nothing in (the newest such
frame only). A code held up to the camera while a fallback runs is read at once: measured
in bench_daemon, a fallback chain (~50 ms, 100-300 ms on a busy machine) in the decode
thread made the next code frame wait for it, the largest part of scan-to-unlock p99 after
the garbage collector's.
A failing camera is reopened with backoff; a file ends. :class:`LoopSource` is the code
source the daemon holds over it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Protocol

import numpy as np

from agent.core.backoff import Backoff
from agent.core.events import Scan
from hw.frames import FramePipeline
from hw.scans import OnCode, OnScan, adapt_on_code

if TYPE_CHECKING:
    from hw.preview import FrameTap

log = logging.getLogger(__name__)

FALLBACK_NICE = 10  # the fallback thread's niceness (CFS weight ~1/9 of the others')


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
        self._hard = LatestFrame()  # gray frames waiting for the fallback passes
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
            threading.Thread(target=self._fallback, name=f"{self._name}-fallback",
                             daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._slot.close()
        self._hard.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("thread %s did not stop within %.1f s", thread.name, timeout)
        if self.state != "finished":
            self.state = "stopped"

    def _reported_state(self) -> str:
        """``failed`` when a decode thread died while we still claim to run: a blind
        scanner must not look healthy (the daemon's supervisor restarts ``failed``)."""
        decode_dead = len(self._threads) == 3 and not all(t.is_alive() for t in self._threads[1:])
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
        try:
            while True:
                item = self._slot.take(timeout=0.5)
                if item is None:
                    if self._slot.closed or self._stop.is_set():
                        break
                    continue
                frame, mono = item
                texts, hard = self._pipeline.primary(frame, mono)
                self._report(texts, mono)
                if hard is not None:
                    self._hard.put(hard, mono)
                tap = self.tap  # after the scan went out: the preview never delays one
                if tap is not None:
                    tap.offer(frame, mono, self._pipeline.last_result,
                              self._pipeline.gate_state)
        finally:
            self._hard.close()
        # Finished once the fallback passes on the last hard frame are done too.
        fallback = self._threads[2]
        while fallback.is_alive() and not self._stop.is_set():
            fallback.join(0.5)
        if self.state != "reopening":
            self.state = "finished" if not self._stop.is_set() else "stopped"
        self.finished.set()

    def _fallback(self) -> None:
        """The fallback passes, newest hard frame first, yielding the CPU to the capture,
        the first pass and the controller (nice +10; never raised back, so no privilege)."""
        with contextlib.suppress(OSError, AttributeError):  # not Linux: same priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), FALLBACK_NICE)
        while True:
            item = self._hard.take(timeout=0.5)
            if item is None:
                if self._hard.closed or self._stop.is_set():
                    return
                continue
            gray, mono = item
            self._report(self._pipeline.fallback(gray, mono), mono)

    def _report(self, texts: list[str], mono: float) -> None:
        if not texts:
            return
        assert self._on_scan is not None
        # One frame, one scan: the first code in decoder order; the rest ride along
        # to be recorded as ignored (agent.core.events.Scan).
        scan = Scan(text=texts[0], method=self._method, at=time.time(), mono=mono,
                    others=tuple(texts[1:]))
        try:
            self._on_scan(scan)
        except Exception:
            log.exception("%s: the scan callback failed", self._name)


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
