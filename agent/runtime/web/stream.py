"""The preview's frames as JPEG, encoded off the scan path and shared by every viewer.

The decode thread only leaves a reference in the :class:`hw.preview.FrameTap`; the
first web thread that wants a newer frame renders it (scale, overlay, JPEG) and every
other viewer gets the same bytes, so two viewers cost one encode.
"""

from __future__ import annotations

import threading
from typing import Any

from agent.runtime.web.live import LiveGate

FPS = 5.0


class Preview:
    def __init__(self, gate: LiveGate) -> None:
        self._gate = gate
        self._lock = threading.Lock()
        self._seq = -1
        self._jpeg: bytes | None = None

    def unavailable(self) -> str:
        kind = self._gate.config.scanner.kind
        if self._gate.tap is None:
            return (f"no camera preview: the scanner is {kind!r} (the preview shows the "
                    "camera's frames)")
        return "no frame yet: the camera is starting or not delivering (see the checklist)"

    def _render(self) -> tuple[int, bytes] | None:
        from hw.preview import render_jpeg

        tap = self._gate.tap
        if tap is None:
            return None
        tap.want()
        frame = tap.latest()
        if frame is None:
            return None
        with self._lock:
            if frame.seq != self._seq or self._jpeg is None:
                self._jpeg = render_jpeg(frame, self._gate.overlay())
                self._seq = frame.seq
            return self._seq, self._jpeg

    def jpeg(self, wait_s: float) -> bytes | None:
        """One current frame, waiting up to ``wait_s`` for the tap to deliver."""
        stop = threading.Event()
        got = self.next_jpeg(-1, stop, wait_s)
        return got[1] if got else None

    def next_jpeg(self, after_seq: int, stop: threading.Event,
                  wait_s: float = 2.0) -> tuple[int, bytes] | None:
        """A frame newer than ``after_seq``, paced to ``FPS``; None when none came in time."""
        waited = 0.0
        step = 1.0 / FPS / 2
        while not stop.is_set() and waited < wait_s:
            got = self._render()
            if got is not None and got[0] != after_seq:
                return got
            stop.wait(step)
            waited += step
        return None

    def describe(self) -> dict[str, Any] | None:
        """The decoder's view in words, for the page: codes, module size, change gate."""
        from hw.preview import describe

        tap = self._gate.tap
        if tap is None:
            return None
        tap.want()
        frame = tap.latest()
        if frame is None:
            return {"frame": False, "codes": []}
        result = frame.result
        return {
            "frame": True, "gate": frame.gate,
            "decode_ms": round(result.ms, 2) if result is not None else None,
            "codes": [describe(f) for f in result.found] if result is not None else [],
        }
