"""What the demo shows: a live panel on a terminal, plain lines in a pipe, or JSON lines.

All three are observers of the daemon (decisions, door changes, alarms, modes); the
panel also reads the controller's status snapshot (LEDs, backlog, broker) a few times a
second and redraws in place.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

from agent.core.output import emit_json
from agent.core.reasons import Reason, denial_class
from hw.pattern_text import signal_text

StatusFn = Callable[[], dict[str, Any]]


def _clock(ts: str) -> str:
    return ts[11:23] if len(ts) >= 23 else ts


def describe(item: dict[str, Any]) -> str:
    """One human line for an observed event."""
    kind = item.get("type")
    when = _clock(str(item.get("ts", "")))
    if kind == "decision":
        verdict = "GRANTED" if item["granted"] else "DENIED "
        who = item.get("sub") or "-"
        return f"{when}  {verdict} {item['reason']:<20} courier {who:<8} via {item['method']}"
    if kind == "door":
        return f"{when}  door {item['state']}"
    if kind == "alarm":
        return f"{when}  ALARM {item['alarm']}: {item.get('detail', '')}"
    if kind == "mode":
        until = f" until {item['until']}" if item.get("until") else ""
        return f"{when}  mode {item['mode']}{until}"
    if kind == "exit":
        return f"{when}  exit button"
    return f"{when}  {kind}: {item}"


class JsonView:
    """``--json``: one object per line, flushed at once."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout

    def __call__(self, item: dict[str, Any]) -> None:
        emit_json(item, self._out)

    def note(self, text: str, **fields: Any) -> None:
        emit_json({"type": "note", "text": text, **fields}, self._out)

    def start(self, status: StatusFn) -> None:
        pass

    def stop(self) -> None:
        pass


class LineView:
    """Plain lines (stdout is not a terminal)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout

    def __call__(self, item: dict[str, Any]) -> None:
        self._out.write(describe(item) + "\n")
        self._out.flush()

    def note(self, text: str, **fields: Any) -> None:
        self._out.write(f"demo: {text}\n")
        self._out.flush()

    def start(self, status: StatusFn) -> None:
        pass

    def stop(self) -> None:
        pass


class PanelView:
    """A panel redrawn in place on a terminal: door, LEDs, last decisions, backlog, broker."""

    def __init__(self, out: TextIO | None = None, refresh_s: float = 0.2) -> None:
        self._out = out or sys.stdout
        self._refresh_s = refresh_s
        self._lines: deque[str] = deque(maxlen=10)
        self._notes: list[str] = []
        self._led = "off"
        self._door: str | None = None  # from door events: still true after the daemon closed
        self._last_snap: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status: StatusFn | None = None

    def __call__(self, item: dict[str, Any]) -> None:
        with self._lock:
            self._lines.appendleft(describe(item))
            if item.get("type") == "door":
                self._door = str(item["state"])
            if item.get("type") == "decision":
                # The words come from the pattern table the gate's LEDs play.
                self._led = signal_text(denial_class(Reason(item["reason"])))

    def note(self, text: str, **fields: Any) -> None:
        with self._lock:
            self._notes.append(text)

    def start(self, status: StatusFn) -> None:
        self._status = status
        self._thread = threading.Thread(target=self._run, name="demo-view", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self._draw()

    def _run(self) -> None:
        while not self._stop.wait(self._refresh_s):
            self._draw()

    def _snapshot(self) -> dict[str, Any]:
        """The live status, or the last complete one once the daemon has closed its stores."""
        snap = self._status() if self._status else {}
        if "backlog" in snap:
            self._last_snap = snap
        return self._last_snap or snap

    def _draw(self) -> None:
        snap = self._snapshot()
        rev = snap.get("revocations", {})
        with self._lock:
            door = self._door or snap.get("door", "?")
            lines = [
                "gate-agent demo (mock pins, simulated camera; Ctrl-C stops)",
                *[f"  {n}" for n in self._notes],
                "",
                f"  door      {door.upper()}      mode {snap.get('mode', '?')}",
                f"  LEDs      {self._led}",
                f"  outbox    {snap.get('backlog', '?')} waiting   broker "
                f"{snap.get('broker', 'offline')}",
                f"  revocations list v{rev.get('version')}   clock "
                f"{snap.get('clock', {}).get('clock', 'n/a')}",
                f"  alarms    {', '.join(snap.get('alarms', {})) or 'none'}",
                "",
                "  last events:",
                *[f"    {line}" for line in self._lines],
            ]
        self._out.write("\x1b[H\x1b[J" + "\n".join(lines) + "\n")
        self._out.flush()


def make_view(json_lines: bool, out: TextIO | None = None) -> JsonView | LineView | PanelView:
    stream = out or sys.stdout
    if json_lines:
        return JsonView(stream)
    if stream.isatty():
        return PanelView(stream)
    return LineView(stream)
