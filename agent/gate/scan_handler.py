"""One scan from verdict to door: judge, write the row durably, then pulse and show.

The gatekeeper (:mod:`agent.gate.gatekeeper`) owns the rules; this is their order on the
controller thread: the verdict, the row (with a grant's replay key in the same commit),
and only after the row is on disk the relay pulse and the indicators. A row that cannot
be written turns the scan into an ``internal_error`` denial: nothing unrecorded opens the
door. A frame's other codes get ``extra_code`` rows. When handling a scan fails after its
row was written, :meth:`ScanHandler.failed` adds an ``error`` row pointing at it instead
of a second scan row (the centre counts scans by row).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from agent.core.clock import Clock
from agent.core.events import Scan
from agent.core.ports import Indicators
from agent.core.reasons import Reason, denial_class
from agent.core.timefmt import format_instant
from agent.gate import record
from agent.gate.actuator import DoorActuator
from agent.gate.gatekeeper import Gatekeeper
from agent.gate.recorder import Recorder

log = logging.getLogger(__name__)

LAST_DECISIONS = 8
LATENCY_SAMPLES = 4096


class ScanHandler:
    """The scan path of one controller (its thread only)."""

    def __init__(self, clock: Clock, gatekeeper: Gatekeeper, recorder: Recorder,
                 actuator: DoorActuator, indicators: Indicators, *, timekeeper: bool,
                 observe: Callable[[dict[str, Any]], None]) -> None:
        self._clock = clock
        self._gatekeeper = gatekeeper
        self._recorder = recorder
        self._actuator = actuator
        self._indicators = indicators
        self._timekeeper = timekeeper  # scan rows carry clock_trusted
        self._observe = observe
        self.last: deque[dict[str, Any]] = deque(maxlen=LAST_DECISIONS)
        # (Scan.mono, monotonic time Door.pulse() returned) per granted scan, for benchmarks.
        self.latencies: deque[tuple[float, float]] = deque(maxlen=LATENCY_SAMPLES)
        # The same grants' stages, monotonic: (frame captured, handling began, judged,
        # row committed, pulse returned); bench_daemon shows where the p99 goes.
        self.stages: deque[tuple[float, float, float, float, float]] = deque(
            maxlen=LATENCY_SAMPLES)
        # Set once the scan being handled has its row: a later failure must not add a
        # second scan row for it. The controller clears it before each event.
        self.entry: Any = None

    def handle(self, scan: Scan) -> None:
        now = self._clock.now()
        began = self._clock.monotonic()
        verdict = self._gatekeeper.judge(scan.text, now, began)
        judged = self._clock.monotonic()
        replay = self._gatekeeper.replay_row(verdict)  # committed with the row: one fsync
        granted, reason = verdict.granted, verdict.reason
        pulse = granted and not self._actuator.holding
        row = record.scan(
            now, granted=granted, reason=reason.value, sub=verdict.sub, cti=verdict.cti,
            method=scan.method, door="unlocked" if pulse else "none",
            clock_trusted=verdict.clock_trusted if self._timekeeper else None,
            clock=verdict.clock,
        )
        entry = (self._recorder.record(row, notify=False, replay=replay) if verdict.record
                 else None)
        recorded = self._clock.monotonic()
        self.entry = entry
        if verdict.record and entry is None:
            granted, pulse, reason = False, False, Reason.INTERNAL_ERROR
        self._shown_decision(granted, reason, verdict.sub, verdict.cti, now, scan.method, entry)
        if pulse:
            self._actuator.pulse(now)
            pulsed = self._clock.monotonic()
            self.latencies.append((scan.mono, pulsed))
            self.stages.append((scan.mono, began, judged, recorded, pulsed))
        self._show(reason)
        for _ in scan.others:  # the frame's other codes: not verified, replay keys unused
            self._recorder.record(record.scan(
                now, granted=False, reason=Reason.EXTRA_CODE.value, sub=None, cti=None,
                method=scan.method, door="none"), notify=False)
        if entry is not None or scan.others:
            self._recorder.notify()

    def failed(self, scan: Scan, exc: Exception) -> None:
        """The scan's own denial row, or, when its row was already written (a failure while
        actuating), an ``error`` row pointing at it. Never raises: this runs in the handler
        of last resort and the loop must go on."""
        try:
            now = self._clock.now()
            recorded = self.entry
            if recorded is not None:
                self._recorder.record(record.error_after(
                    now, getattr(recorded, "seq", None), f"{type(exc).__name__}: {exc}",
                    method=scan.method))
                return
            entry = self._recorder.record(record.scan(
                now, granted=False, reason=Reason.INTERNAL_ERROR.value, sub=None, cti=None,
                method=scan.method, door="none"))
            self._show(Reason.INTERNAL_ERROR)
            self._shown_decision(False, Reason.INTERNAL_ERROR, None, None, now, scan.method,
                                 entry)
        except Exception:
            log.exception("recording the failed scan failed too")

    def _shown_decision(self, granted: bool, reason: Reason, sub: str | None, cti: str | None,
                        now: float, method: str, entry: Any) -> None:
        """The decision as the observer and the status see it (before the relay line)."""
        shown = {
            "type": "decision", "granted": granted, "reason": reason.value, "sub": sub,
            "cti": cti, "ts": format_instant(now), "method": method,
            "seq": getattr(entry, "seq", None), "recorded": entry is not None,
        }
        self.last.appendleft(shown)
        self._observe(shown)

    def _show(self, reason: Reason) -> None:
        try:
            self._indicators.show(denial_class(reason))
        except Exception:
            log.exception("indicators failed for %s", reason.value)
