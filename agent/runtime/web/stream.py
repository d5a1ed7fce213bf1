"""The preview's frames as JPEG, encoded off the scan path by one thread for every viewer.

The decode thread only leaves a reference in the :class:`hw.preview.FrameTap`. One
``web-preview`` thread renders it (scale, overlay, JPEG) while someone watches; the
request threads only wait for newer bytes. One thread, not one per connection: OpenCV
and glibc keep per-thread buffers, so rendering in each short-lived request thread grew
the daemon by megabytes per viewer that came and went (measured, docs/decisions.md).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from agent.runtime.web.live import LiveGate

log = logging.getLogger(__name__)

FPS = 5.0
IDLE_AFTER_S = 3.0  # no viewer asked this long: the render thread sleeps


class Preview:
    def __init__(self, gate: LiveGate) -> None:
        self._gate = gate
        self._cond = threading.Condition()
        self._seq = -1
        self._jpeg: bytes | None = None
        self._wanted_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0

    def start(self) -> None:
        if self._gate.tap is None:
            return  # no camera: nothing to render
        self._thread = threading.Thread(target=self._run, name="web-preview", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("thread web-preview did not stop within %.1f s", timeout)

    def unavailable(self) -> str:
        kind = self._gate.config.scanner.kind
        if self._gate.tap is None:
            return (f"no camera preview: the scanner is {kind!r} (the preview shows the "
                    "camera's frames)")
        return "no frame yet: the camera is starting or not delivering (see the checklist)"

    def _want(self) -> None:
        tap = self._gate.tap
        if tap is not None:
            tap.want()
        with self._cond:
            self._wanted_until = time.monotonic() + IDLE_AFTER_S
            self._cond.notify_all()

    def _run(self) -> None:
        from hw.preview import render_jpeg

        tap = self._gate.tap
        assert tap is not None
        while not self._stop.is_set():
            with self._cond:
                if time.monotonic() > self._wanted_until:
                    self._jpeg, self._seq = None, -1  # nobody watches: keep nothing
                    self._cond.wait(1.0)
                    continue
            frame = tap.latest()
            if frame is not None and frame.seq != self._seq:
                try:
                    jpeg = render_jpeg(frame, self._gate.overlay())
                except Exception:
                    self.errors += 1
                    log.exception("rendering the preview failed; trying the next frame")
                    jpeg = None
                with self._cond:
                    self._seq = frame.seq
                    self._jpeg = jpeg
                    self._cond.notify_all()
            self._stop.wait(1.0 / FPS / 2)

    def next_jpeg(self, after_seq: int, stop: threading.Event,
                  wait_s: float = 2.0) -> tuple[int, bytes] | None:
        """A frame newer than ``after_seq``; None when none came within ``wait_s``."""
        self._want()
        deadline = time.monotonic() + wait_s
        with self._cond:
            while not stop.is_set() and not self._stop.is_set():
                if self._jpeg is not None and self._seq != after_seq:
                    return self._seq, self._jpeg
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))
        return None

    def jpeg(self, wait_s: float) -> bytes | None:
        """One current frame, waiting up to ``wait_s`` for the first one."""
        got = self.next_jpeg(-1, threading.Event(), wait_s)
        return got[1] if got else None

    def describe(self) -> dict[str, Any] | None:
        """The decoder's view in words, for the page: codes, module size, change gate."""
        from hw.preview import describe

        tap = self._gate.tap
        if tap is None:
            return None
        self._want()
        frame = tap.latest()
        if frame is None:
            return {"frame": False, "codes": []}
        result = frame.result
        return {
            "frame": True, "gate": frame.gate,
            "decode_ms": round(result.ms, 2) if result is not None else None,
            "codes": [describe(f) for f in result.found] if result is not None else [],
        }
