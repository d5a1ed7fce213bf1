"""What the page reads from the running daemon, and the one thing it may ask of it.

Reads are copies: the controller's status snapshot (refreshed at most once a second, so
a page polling or a preview drawing never queries the entry log more often than that),
the debounced door inputs, the scanner's counters. The relay test is a typed event on the
controller's queue (``LocalOpen``), handled like the centre's open command; this thread
never touches a pin.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from agent.core.config import Config
from agent.core.events import LocalOpen
from hw.preview import FrameTap, Overlay

STATUS_EVERY_S = 1.0
RELAY_TEST_CAUSE = "relay_test"


class ControllerLike(Protocol):
    def status(self) -> dict[str, Any]: ...

    def submit(self, event: LocalOpen) -> bool: ...


class DaemonLike(Protocol):
    """The parts of agent.runtime.daemon.Daemon the page reads."""

    config: Config
    controller: Any
    source: Any
    inputs: Any


class LiveGate:
    """The daemon as the page sees it; safe to call from any web thread."""

    def __init__(self, daemon: DaemonLike, tap: FrameTap | None) -> None:
        self._daemon = daemon
        self.config = daemon.config
        self.tap = tap
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {}
        self._status_at = -1e9

    def status(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            if now - self._status_at >= STATUS_EVERY_S:
                controller = self._daemon.controller
                self._status = controller.status() if controller is not None else {}
                self._status_at = now
            return self._status

    def inputs(self) -> dict[str, bool] | None:
        inputs = self._daemon.inputs
        return inputs.state() if inputs is not None else None

    def scanner(self) -> dict[str, Any] | None:
        source = self._daemon.source
        return dict(source.status()) if source is not None else None

    def overlay(self) -> Overlay:
        """The last decision and the door, as short ASCII lines for the preview."""
        snap = self.status()
        last = (snap.get("last_decisions") or [None])[0]
        if last is None:
            decision = "last scan: none yet"
        else:
            verdict = "GRANTED" if last.get("granted") else "DENIED"
            decision = f"last scan: {verdict} {last.get('reason')} at {last.get('ts')}"
        door = f"door {snap.get('door', '?')}, mode {snap.get('mode', '?')}"
        return Overlay((decision, door))

    def relay_test(self, timeout: float = 5.0) -> bool | None:
        """One pulse through the controller: True done, False refused, None no answer."""
        controller = self._daemon.controller
        if controller is None:
            return None
        answered = threading.Event()
        result: list[bool] = []

        def reply(done: bool) -> None:
            result.append(done)
            answered.set()

        if not controller.submit(LocalOpen(RELAY_TEST_CAUSE, reply)):
            return None
        if not answered.wait(timeout):
            return None
        with self._lock:
            self._status_at = -1e9  # the next status shows the new row and door state
        return result[0]
