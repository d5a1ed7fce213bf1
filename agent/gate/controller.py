"""The controller: one thread that owns the gate's state and turns events into actions.

Scanner threads, gpiozero callbacks and the MQTT thread only put typed events from
:mod:`agent.core.events` on its two bounded queues (:mod:`agent.gate.inbound`): scans and
door inputs on their own, served first; the centre's messages only once their size and
signature checked out, so a flood can never displace a scan. The controller keeps the
loop and the dispatch; the rules of a scan are the gatekeeper's
(:mod:`agent.gate.gatekeeper`), their order (judge, write the row with its replay key,
only then pulse and show) is the scan handler's (:mod:`agent.gate.scan_handler`), rows
are written by the recorder, the relay is driven by the door actuator and the alarms
about the gate's own state are checked each tick by :mod:`agent.gate.health`.

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
from agent.core.reasons import Reason
from agent.core.timefmt import format_instant
from agent.gate import record
from agent.gate.actuator import DoorActuator
from agent.gate.centre_handlers import CentreHandlers
from agent.gate.door_monitor import DoorAlarm, DoorMonitor
from agent.gate.gatekeeper import Gatekeeper
from agent.gate.health import StateAlarms
from agent.gate.inbound import REPORTED_REFUSALS, Admission, Inbox, RefusalReports
from agent.gate.modes import Mode, ModeKeeper
from agent.gate.parts import InboundHandler, Parts, SyncPort
from agent.gate.ratelimit import DenialLimiter, Suppressed
from agent.gate.recorder import Recorder
from agent.gate.scan_handler import ScanHandler
from agent.gate.upkeep import Upkeep
from agent.protocol.command import peek_command_id

log = logging.getLogger(__name__)

Event = Scan | DoorInput | Inbound | LocalOpen | Stop


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
        self.scans = ScanHandler(self._clock, self.gatekeeper, self.recorder, self.actuator,
                                 parts.indicators, timekeeper=parts.trust is not None,
                                 observe=self._observe)
        self.state_alarms = StateAlarms(
            self._alarms, self.gatekeeper, parts.revocations, parts.replays, parts.trust,
            self._modes, self._inbox, cfg.policy.revocations_max_age_h)
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
        self._busy = False
        self.dropped = 0
        self.errors = 0
        self._refresh_snapshot()

    @property
    def latencies(self) -> deque[tuple[float, float]]:
        """(Scan.mono, monotonic time Door.pulse() returned) per granted scan (benchmarks)."""
        return self.scans.latencies

    def attach_sync(self, sync: SyncPort) -> None:
        """The link to the centre, once it is built (it needs this controller's callbacks)."""
        self._sync = sync
        self._centre.sync = sync
        self.upkeep.sync = sync
        self.state_alarms.sync = sync
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
        self.scans.entry = None
        try:
            fn(event)
        except Exception as exc:
            self.errors += 1
            log.exception("controller failed handling %s; door locked", type(event).__name__)
            self._alarms["controller_error"] = f"{type(exc).__name__}: {exc}"[:200]
            self.actuator.safe_lock()
            if isinstance(event, Scan):
                self.scans.failed(event, exc)
        finally:
            try:
                self._refresh_snapshot()
            except Exception:
                log.exception("status snapshot failed")

    def _handle(self, event: Event) -> None:
        if isinstance(event, Scan):
            self.scans.handle(event)
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
        self.state_alarms.check(now)
        self.upkeep.tick()

    def _flush_suppressed(self, _: None) -> None:
        """At stop: denials counted but not yet in a summary row get one now."""
        limiter = self.gatekeeper.limiter
        summary = limiter.flush() if limiter is not None else None
        if summary is not None:
            self._record_suppressed(summary, self._clock.now())

    def _record_suppressed(self, summary: Suppressed, now: float) -> None:
        self.recorder.record(record.rate_limit_summary(now, summary.count, summary.reasons),
                             notify=False)
        log.warning("rate limit: %d denied scans not recorded one by one (%s)", summary.count,
                    dict(summary.reasons))

    # ---- observer -----------------------------------------------------------------------

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
            "last_decisions": list(self.scans.last),
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
