"""The controller: one thread that owns the gate's state and turns events into actions.

Scanner threads, gpiozero callbacks and the MQTT thread only put typed events from
:mod:`agent.core.events` on its two bounded queues (:mod:`agent.gate.inbound`): scans and
door inputs on their own, served first; the centre's messages only once their size and
signature checked out, so a flood can never displace a scan. The controller keeps the
loop and the dispatch; the rules of a scan are the gatekeeper's
(:mod:`agent.gate.gatekeeper`), rows are written by the recorder and the relay is driven
by the door actuator. For a scan: judge, remember the replay key, write the row durably,
and only then pulse the relay and show the indicators.

Any exception while handling one event is logged, the door is locked (unless free mode
or the fire input holds it released on purpose), a scan not yet recorded becomes a
recorded ``internal_error`` denial (one already recorded gets an ``error`` row instead of
a second scan row), and the loop goes on. Each loop turn is a heartbeat: the daemon's
watchdog ping comes from here, so a hung controller is restarted by systemd.

Only this thread writes the TinyDB verification cache (revocations, replay cache, meta).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from agent.core.events import DoorInput, Inbound, LocalOpen, Scan, Stop
from agent.core.reasons import Reason, denial_class
from agent.core.timefmt import format_instant
from agent.gate import record
from agent.gate.actuator import DoorActuator
from agent.gate.centre_handlers import CentreHandlers
from agent.gate.door_monitor import DoorAlarm, DoorMonitor
from agent.gate.gatekeeper import Gatekeeper
from agent.gate.inbound import REPORTED_REFUSALS, Admission, Inbox, RefusalReports
from agent.gate.modes import Mode, ModeKeeper
from agent.gate.parts import InboundHandler, Parts, SyncPort
from agent.gate.ratelimit import DenialLimiter, Suppressed
from agent.gate.recorder import Recorder
from agent.gate.upkeep import Upkeep
from agent.protocol.command import peek_command_id

log = logging.getLogger(__name__)

Event = Scan | DoorInput | Inbound | LocalOpen | Stop

LAST_DECISIONS = 8
LATENCY_SAMPLES = 4096


class Controller:
    """The single owner of gate state; feed it with :meth:`submit`, run it with :meth:`start`."""

    def __init__(self, parts: Parts, queue_size: int = 1024, tick_s: float = 0.5, *,
                 extra_handlers: Mapping[str, InboundHandler] | None = None) -> None:
        self.parts = parts
        cfg = parts.config
        self._cfg = cfg
        self._clock = parts.clock
        # Scans and door inputs apart from the centre's messages (agent/gate/inbound.py).
        self._inbox = Inbox(Admission(parts.keyring), local_slots=queue_size)
        self._refusal_reports = RefusalReports()
        self._tick_s = tick_s
        self._sync: SyncPort | None = None
        self._alarms: dict[str, str] = {}
        self._modes = ModeKeeper(cfg.policy.mode, parts.meta, self._clock.now())
        self._monitor = DoorMonitor(cfg.door.held_open_s)
        self.gatekeeper = Gatekeeper(
            cfg, parts.keyring, parts.revocations, parts.replays, trust=parts.trust,
            modes=self._modes, limiter=DenialLimiter(cfg.policy.denials_per_minute),
        )
        self.recorder = Recorder(parts.entry_log, cfg.gate.site, cfg.gate.id, self._alarms)
        self.actuator = DoorActuator(parts.door, cfg.door.unlock_s, self._clock, self._monitor,
                                     self._hold_wanted, self._alarms)
        self._centre = CentreHandlers(self, parts, parts.trust, parts.outbox)
        self.upkeep = Upkeep(self._clock, parts.keyring, parts.revocations,
                             timekeeper=parts.trust, entry_log=parts.entry_log,
                             refused=self._centre.refused)
        self._handlers: dict[str, InboundHandler] = {
            "revocations_full": self.upkeep.on_list,
            "revocations_delta": self.upkeep.on_list,
            "connected": self.upkeep.on_connected,
            "cmd": self._centre.on_command,
            "time": self._centre.on_time,
            **(extra_handlers or {}),
        }
        self._thread: threading.Thread | None = None
        self._status_lock = threading.Lock()
        self._snapshot: dict[str, Any] = {}
        self._last: deque[dict[str, Any]] = deque(maxlen=LAST_DECISIONS)
        self._busy = False
        # Set once the scan being handled has its row: a later failure must not add a
        # second scan row for it (the centre counts scans by row).
        self._scan_entry: Any = None
        self.dropped = 0
        self.errors = 0
        # (Scan.mono, monotonic time Door.pulse() returned) per granted scan, for benchmarks.
        self.latencies: deque[tuple[float, float]] = deque(maxlen=LATENCY_SAMPLES)
        self._refresh_snapshot()

    def attach_sync(self, sync: SyncPort) -> None:
        """The link to the centre, once it is built (it needs this controller's callbacks)."""
        self._sync = sync
        self._centre.sync = sync
        self.upkeep.sync = sync
        self.recorder.uploader = sync

    # ---- feeding (any thread) -----------------------------------------------------------

    def submit(self, event: Event) -> bool:
        """Queue an event without blocking; a full queue drops it (counted and logged).

        Centre messages go through admission first (size, signature) on the caller's
        thread; they can never take the place of a scan or a door input."""
        if isinstance(event, Inbound):
            refusal = self._inbox.put_centre(event)
            if refusal in REPORTED_REFUSALS and event.kind == "cmd":
                self._report_refused(event, refusal)
            return refusal is None
        if isinstance(event, Stop):
            self._inbox.close(event)
            return True
        if self._inbox.put_local(event):
            return True
        self.dropped += 1
        log.warning("controller queue full: dropped %s (%d so far)", type(event).__name__,
                    self.dropped)
        return False

    def _report_refused(self, ev: Inbound, reason: str) -> None:
        """A command refused before queueing still gets its result (rate limited)."""
        sync = self._sync
        if sync is None or not self._refusal_reports.allow():
            return
        sync.publish_result(peek_command_id(ev.payload) or "", False, reason,
                            f"refused on arrival ({reason}): only commands signed by a "
                            "trusted ops key are queued")

    def on_scan(self, scan: Scan) -> None:
        self.submit(scan)

    def on_door_input(self, event: DoorInput) -> None:
        self.submit(event)

    def on_inbound(self, event: Inbound) -> None:
        self.submit(event)

    # ---- running ----------------------------------------------------------------------------

    def start(self) -> None:
        """Apply the mode's door state (free: held open), then run the loop in its thread."""
        self.actuator.apply_hold()
        self._thread = threading.Thread(target=self.run, name="controller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Handle everything already queued, then stop; True when the loop ended in time."""
        self._inbox.close(Stop("shutdown"))
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.error("controller loop did not stop within %.1f s", timeout)
                return False
        return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """The loop: one event at a time; a turn without events still ticks."""
        while True:
            self._beat()
            event = self._inbox.get(self._tick_s)
            if event is None:
                self._guarded(self._tick, None)
                continue
            if isinstance(event, Stop):
                log.info("controller stopping: %s", event.reason)
                self._guarded(self._flush_suppressed, None)
                return
            self._busy = True
            self._guarded(self._handle, event)
            self._guarded(self._tick, None)
            self._busy = False

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being handled (the demo ends on this)."""
        return self._inbox.empty() and not self._busy

    def process(self, event: Event) -> None:
        """Handle one event synchronously, as one loop turn (tests, and only without start())."""
        self._guarded(self._handle, event)
        self._guarded(self._tick, None)

    def _beat(self) -> None:
        if self.parts.heartbeat is not None:
            try:
                self.parts.heartbeat()
            except Exception:
                log.exception("heartbeat callback failed")

    def _guarded(self, fn: Callable[[Any], None], event: Any) -> None:
        self._scan_entry = None
        try:
            fn(event)
        except Exception as exc:
            self.errors += 1
            log.exception("controller failed handling %s; door locked", type(event).__name__)
            self._alarms["controller_error"] = f"{type(exc).__name__}: {exc}"[:200]
            self.actuator.safe_lock()
            if isinstance(event, Scan):
                self._record_scan_failure(event, exc)
        finally:
            try:
                self._refresh_snapshot()
            except Exception:
                log.exception("status snapshot failed")

    def _handle(self, event: Event) -> None:
        if isinstance(event, Scan):
            self._on_scan(event)
        elif isinstance(event, DoorInput):
            self._on_door_input(event)
        elif isinstance(event, Inbound):
            handler = self._handlers.get(event.kind)
            if handler is None:
                log.warning("no handler for inbound %s message; ignored", event.kind)
            else:
                handler(event)
        elif isinstance(event, LocalOpen):
            done = self.open_once(event.cause)
            if event.reply is not None:
                event.reply(done)
        else:
            raise TypeError(f"unexpected controller event {event!r}")

    # ---- scans ----------------------------------------------------------------------------

    def _on_scan(self, scan: Scan) -> None:
        now = self._clock.now()
        verdict = self.gatekeeper.judge(scan.text, now, self._clock.monotonic())
        replay = self.gatekeeper.replay_row(verdict)  # committed with the row: one fsync
        granted, reason = verdict.granted, verdict.reason
        pulse = granted and not self.actuator.holding
        row = record.scan(
            now, granted=granted, reason=reason.value, sub=verdict.sub, cti=verdict.cti,
            method=scan.method, door="unlocked" if pulse else "none",
            clock_trusted=verdict.clock_trusted if self.parts.trust is not None else None,
            clock=verdict.clock,
        )
        entry = (self.recorder.record(row, notify=False, replay=replay) if verdict.record
                 else None)
        self._scan_entry = entry
        if verdict.record and entry is None:
            granted, pulse, reason = False, False, Reason.INTERNAL_ERROR
        self._shown_decision(granted, reason, verdict.sub, verdict.cti, now, scan.method, entry)
        if pulse:
            self.actuator.pulse(now)
            self.latencies.append((scan.mono, self._clock.monotonic()))
        self._show(reason)
        for _ in scan.others:  # the frame's other codes: not verified, replay keys unused
            self.recorder.record(record.scan(
                now, granted=False, reason=Reason.EXTRA_CODE.value, sub=None, cti=None,
                method=scan.method, door="none"), notify=False)
        if entry is not None or scan.others:
            self.recorder.notify()

    def _shown_decision(self, granted: bool, reason: Reason, sub: str | None, cti: str | None,
                        now: float, method: str, entry: Any) -> None:
        """The decision as the observer and the status see it (before the relay line)."""
        shown = {
            "type": "decision", "granted": granted, "reason": reason.value, "sub": sub,
            "cti": cti, "ts": format_instant(now), "method": method,
            "seq": getattr(entry, "seq", None), "recorded": entry is not None,
        }
        self._last.appendleft(shown)
        self._observe(shown)

    def _record_scan_failure(self, scan: Scan, exc: Exception) -> None:
        """The scan's own denial row, or, when its row was already written (a failure while
        actuating), an ``error`` row pointing at it. Never raises: this runs in the handler
        of last resort and the loop must go on."""
        try:
            now = self._clock.now()
            recorded = self._scan_entry
            if recorded is not None:
                self.recorder.record(record.error_after(
                    now, getattr(recorded, "seq", None), f"{type(exc).__name__}: {exc}",
                    method=scan.method))
                return
            entry = self.recorder.record(record.scan(
                now, granted=False, reason=Reason.INTERNAL_ERROR.value, sub=None, cti=None,
                method=scan.method, door="none"))
            self._show(Reason.INTERNAL_ERROR)
            self._shown_decision(False, Reason.INTERNAL_ERROR, None, None, now, scan.method,
                                 entry)
        except Exception:
            log.exception("recording the failed scan failed too")

    # ---- door inputs ----------------------------------------------------------------------

    def _on_door_input(self, ev: DoorInput) -> None:
        now = self._clock.now()
        self.actuator.track(now)
        unlocked = self.actuator.unlocked
        if ev.kind == "exit":
            holding = self.actuator.holding
            row = record.exit_pressed(now, door="none" if holding else "unlocked")
            if self.recorder.record(row) is not None:
                self.actuator.pulse(now)
            self._observe({"type": "exit", "ts": format_instant(now)})
        for alarm in self._monitor.on_input(ev, now, unlocked):
            self._raise_alarm(alarm)
        if ev.kind in ("fire", "fire_clear"):
            self.actuator.apply_hold()

    def _raise_alarm(self, alarm: DoorAlarm) -> None:
        name = alarm.kind.removesuffix("_clear")
        if alarm.kind.endswith("_clear"):
            self._alarms.pop(name, None)
        else:
            self._alarms[name] = format_instant(alarm.at)
        log.warning("door alarm %s: %s", alarm.kind, alarm.detail)
        door: record.DoorAction = "unlocked" if self.actuator.unlocked else "locked"
        self.recorder.record(record.alarm(alarm.at, alarm.kind, alarm.detail, door=door))
        self._observe({"type": "alarm", "alarm": alarm.kind, "detail": alarm.detail,
                       "ts": format_instant(alarm.at)})

    # ---- modes and remote opens (the centre's commands call these) --------------------------

    @property
    def mode(self) -> Mode:
        return self._modes.mode

    def set_mode(self, mode: Mode, duration_s: float | None, cause: str) -> None:
        """Switch mode now (controller thread only); recorded in the entry log."""
        now = self._clock.now()
        self._modes.set(mode, duration_s, now)
        self._mode_changed(now, cause)
        self._refresh_snapshot()

    def _mode_changed(self, now: float, cause: str) -> None:
        modes = self._modes
        self.recorder.record(record.mode_change(now, modes.mode, modes.until, cause))
        self.actuator.apply_hold()
        log.info("gate mode is now %s (%s)", modes.mode, cause)
        self._observe({"type": "mode", "mode": modes.mode, "ts": format_instant(now),
                       "until": format_instant(modes.until) if modes.until else None})

    def open_once(self, cause: str, cmd_id: str | None = None) -> bool:
        """A remote open: recorded, then one pulse. False when not done (lockdown, no log)."""
        now = self._clock.now()
        allowed = self._modes.mode != "lockdown"
        row = record.command(
            now, cause, granted=allowed,
            reason=Reason.OK.value if allowed else Reason.LOCKDOWN.value,
            door="unlocked" if allowed and not self.actuator.holding else "none", cmd_id=cmd_id,
        )
        if self.recorder.record(row) is None or not allowed:
            return False
        self.actuator.pulse(now)
        return True

    def _hold_wanted(self) -> bool:
        return self._modes.mode == "free" or self._monitor.fire

    # ---- periodic -----------------------------------------------------------------------------

    def _tick(self, _: None) -> None:
        if self.parts.trust is not None:
            self.parts.trust.tick()
        now = self._clock.now()
        mono = self._clock.monotonic()
        if self._modes.tick(now):
            self._mode_changed(now, "mode_expired")
        for alarm in self._monitor.tick(now):
            self._raise_alarm(alarm)
        self.actuator.track(now)
        self.actuator.end_overrun_pulse(mono)
        limiter = self.gatekeeper.limiter
        summary = limiter.due_summary(mono) if limiter is not None else None
        if summary is not None:
            self._record_suppressed(summary, now)
        stale = self.gatekeeper.list_stale(now)
        if stale and "revocations_stale" not in self._alarms:
            log.warning("revocation list is missing or older than %.0f h",
                        self._cfg.policy.revocations_max_age_h)
            self._alarms["revocations_stale"] = format_instant(now)
        elif not stale:
            self._alarms.pop("revocations_stale", None)
        trust = self.parts.trust
        if trust is not None and not trust.trusted:  # the centre sees it; time is asked for
            self._alarms.setdefault("clock_untrusted", format_instant(now))
        else:
            self._alarms.pop("clock_untrusted", None)
        self._maintain_stores()
        self.upkeep.tick()

    def _flush_suppressed(self, _: None) -> None:
        """At stop: denials counted but not yet in a summary row get one now."""
        limiter = self.gatekeeper.limiter
        summary = limiter.flush() if limiter is not None else None
        if summary is not None:
            self._record_suppressed(summary, self._clock.now())

    def _maintain_stores(self) -> None:
        """Upkeep that must run on the thread owning the stores: compaction, recovery alarms."""
        revocations = self.parts.revocations
        if revocations.compaction_due and self._inbox.empty():
            try:
                revocations.compact()
            except Exception:
                log.exception("compacting the revocation list failed; will retry when idle")
        problems = [*revocations.problems(), *self.parts.replays.problems()]
        if problems:
            self._alarms["state_recovered"] = "; ".join(problems)
        damage = [*getattr(self.parts.trust, "problems", list)(), self._modes.damage]
        if any(damage):  # values restored out of bounds: ignored, never fatal
            self._alarms["state_damaged"] = "; ".join(d for d in damage if d)[:400]
        if self._inbox.resync_due() and self._sync is not None:
            log.warning("a signed revocation list was dropped (no room): asking for a resync")
            self._sync.request_resync("revocation list dropped", revocations.version)

    def _record_suppressed(self, summary: Suppressed, now: float) -> None:
        self.recorder.record(record.rate_limit_summary(now, summary.count, summary.reasons),
                             notify=False)
        log.warning("rate limit: %d denied scans not recorded one by one (%s)", summary.count,
                    dict(summary.reasons))

    # ---- helpers ---------------------------------------------------------------------------------

    def _show(self, reason: Reason) -> None:
        try:
            self.parts.indicators.show(denial_class(reason))
        except Exception:
            log.exception("indicators failed for %s", reason.value)

    def _observe(self, item: dict[str, Any]) -> None:
        if self.parts.observer is None:
            return
        try:
            self.parts.observer(item)
        except Exception:
            log.exception("observer failed")

    # ---- status ---------------------------------------------------------------------------

    def _refresh_snapshot(self) -> None:
        now = self._clock.now()
        limiter = self.gatekeeper.limiter
        snapshot: dict[str, Any] = {
            "mode": self._modes.mode,
            "mode_until": format_instant(self._modes.until) if self._modes.until else None,
            "door": "unlocked" if self.actuator.unlocked else "locked",
            "last_decisions": list(self._last),
            "revocations": self.gatekeeper.list_status(now).to_json(),
            "clock": self._clock_status(),
            "alarms": dict(self._alarms),
            "rate_limited": limiter.active if limiter is not None else False,
            "queue_dropped": self.dropped,
            "inbound": {**self._inbox.status(), "refused_later": dict(self._centre.refused)},
            "append_failures": self.recorder.failures,
            "errors": self.errors,
        }
        with self._status_lock:
            self._snapshot = snapshot

    def _clock_status(self) -> dict[str, Any]:
        trust = self.parts.trust
        if trust is None:
            return {"trusted": True}
        return {"trusted": trust.trusted, **trust.snapshot()}

    def status(self) -> dict[str, Any]:
        """A copy of the latest snapshot plus live fields; safe from any thread."""
        with self._status_lock:
            snap = dict(self._snapshot)
        snap["door"] = "unlocked" if self.actuator.unlocked else "locked"
        snap["controller_alive"] = self.alive
        if self._sync is not None:
            snap["broker_connected"] = self._sync.connected
        if self.parts.live_status is not None:
            try:
                snap.update(self.parts.live_status())
            except Exception as exc:
                snap["live_status_error"] = f"{type(exc).__name__}: {exc}"
        return snap
