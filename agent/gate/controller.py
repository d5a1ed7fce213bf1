"""The controller: one thread that owns the gate's state and turns events into actions.

Scanner threads, gpiozero callbacks and the MQTT thread only put typed events from
:mod:`agent.core.events` on its bounded queue. For a scan it decides (mode, rate limit,
``agent.gate.policy.decide``, stale-list and clock rules), writes the event durably with
``EntryLog.append`` and only then pulses the relay and shows the indicators. Any
exception while handling one event is logged, the door is locked (unless free mode or
the fire input holds it released on purpose), a scan not yet recorded becomes a recorded
``internal_error`` denial (one already recorded gets an ``error`` row instead of a
second scan row), and the loop goes on. Each tick also locks a relay still released
after its pulse should have ended, in case the relay driver's own timer failed. Each
loop turn is a heartbeat: the daemon's watchdog ping comes from here, so a hung
controller is restarted by systemd.

Only this thread writes the TinyDB verification cache (revocations, replay cache, meta).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.core.clock import Clock
from agent.core.config import Config
from agent.core.errors import RevocationListError
from agent.core.events import Acked, DoorInput, Inbound, Scan, Stop
from agent.core.ports import Door, Indicators
from agent.core.reasons import Reason, denial_class
from agent.core.timefmt import format_instant
from agent.gate.door_monitor import DoorAlarm, DoorMonitor
from agent.gate.modes import MetaLike, Mode, ModeKeeper
from agent.gate.policy import Decision, GateContext, decide, revocations_stale
from agent.gate.ratelimit import DenialLimiter, Suppressed
from agent.protocol.keys import KeyRing
from agent.protocol.revocation import RevocationList, parse_revocation_list

log = logging.getLogger(__name__)

Event = Scan | DoorInput | Inbound | Acked | Stop
Observer = Callable[[dict[str, Any]], None]
InboundHandler = Callable[[Inbound], None]

LAST_DECISIONS = 8
LATENCY_SAMPLES = 4096
# A relay still released this long after its pulse should have ended is locked by the
# controller (the relay driver's timer normally ends the pulse itself).
RELAY_OVERRUN_S = 1.0


class EntryLogPort(Protocol):
    def append(self, event: dict[str, Any]) -> Any: ...


class RevocationPort(Protocol):
    version: int | None
    issued_at: int | None

    def is_revoked(self, cti: str, sub: str, iat: int) -> bool: ...

    def apply(self, lst: RevocationList) -> None: ...

    @property
    def compaction_due(self) -> bool: ...

    def compact(self) -> None: ...

    def problems(self) -> list[str]: ...


class ReplayPort(Protocol):
    def seen(self, key: str) -> bool: ...

    def remember(self, key: str, until: float) -> None: ...

    def problems(self) -> list[str]: ...


class ClockTrust(Protocol):
    """Whether the wall clock may be used for decisions (agent.gate.timekeeper.Timekeeper)."""

    @property
    def trusted(self) -> bool: ...

    def tick(self) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...


class SyncPort(Protocol):
    @property
    def connected(self) -> bool: ...

    def notify(self) -> None: ...

    def request_resync(self, reason: str, have_version: int | None = None) -> None: ...


@dataclass
class Parts:
    """What the controller drives and reads; built by the daemon (or a test)."""

    config: Config
    clock: Clock
    door: Door
    indicators: Indicators
    keyring: KeyRing
    revocations: RevocationPort
    replays: ReplayPort
    meta: MetaLike | None
    entry_log: EntryLogPort
    trust: ClockTrust | None = None
    sync: SyncPort | None = None
    observer: Observer | None = None
    heartbeat: Callable[[], None] | None = None
    # Extra live status (scanner state, outbox backlog): read on the caller's thread.
    live_status: Callable[[], dict[str, Any]] | None = None


class Controller:
    """The single owner of gate state; feed it with :meth:`submit`, run it with :meth:`start`."""

    def __init__(self, parts: Parts, queue_size: int = 1024, tick_s: float = 0.5) -> None:
        self.parts = parts
        cfg = parts.config
        self._cfg = cfg
        self._clock = parts.clock
        self._queue: queue.Queue[Event] = queue.Queue(maxsize=queue_size)
        self._tick_s = tick_s
        self._ctx = GateContext(
            site=cfg.gate.site,
            gate=cfg.gate.id,
            accept_static=cfg.policy.accept_static,
            presentation_window_s=cfg.policy.presentation_window_s,
            clock_skew_s=cfg.policy.clock_skew_s,
        )
        self._limiter = DenialLimiter(cfg.policy.denials_per_minute)
        self._modes = ModeKeeper(cfg.policy.mode, parts.meta, self._clock.now())
        self._monitor = DoorMonitor(cfg.door.held_open_s)
        self.inbound_handlers: dict[str, InboundHandler] = {
            "revocations_full": self._on_revocation_list,
            "revocations_delta": self._on_revocation_list,
        }
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._status_lock = threading.Lock()
        self._snapshot: dict[str, Any] = {}
        self._last: deque[dict[str, Any]] = deque(maxlen=LAST_DECISIONS)
        self._alarms: dict[str, str] = {}
        self._hold = False
        self._relay_unlocked = False
        self._pulse_ends_mono: float | None = None
        self._busy = False
        # Set once the scan being handled has its row: a later failure must not add a
        # second scan row for it (the centre counts scans by row).
        self._scan_entry: Any = None
        self.dropped = 0
        self.append_failures = 0
        self.errors = 0
        # (Scan.mono, monotonic time Door.pulse() returned) per granted scan, for benchmarks.
        self.latencies: deque[tuple[float, float]] = deque(maxlen=LATENCY_SAMPLES)
        self._refresh_snapshot()

    # ---- feeding (any thread) -----------------------------------------------------------

    def submit(self, event: Event) -> bool:
        """Queue an event without blocking; a full queue drops it (counted and logged)."""
        try:
            self._queue.put_nowait(event)
            return True
        except queue.Full:
            self.dropped += 1
            log.warning("controller queue full: dropped %s (%d so far)", type(event).__name__,
                        self.dropped)
            return False

    def on_scan(self, scan: Scan) -> None:
        self.submit(scan)

    def on_code(self, text: str, method: str) -> None:
        self.submit(Scan(text, method, self._clock.now(), self._clock.monotonic()))

    def on_door_input(self, event: DoorInput) -> None:
        self.submit(event)

    def on_inbound(self, event: Inbound) -> None:
        self.submit(event)

    # ---- running ----------------------------------------------------------------------------

    def start(self) -> None:
        """Apply the mode's door state (free: held open), then run the loop in its thread."""
        self._apply_hold()
        self._thread = threading.Thread(target=self.run, name="controller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Handle everything already queued, then stop; True when the loop ended in time."""
        try:
            self._queue.put(Stop("shutdown"), timeout=timeout)
        except queue.Full:
            log.error("controller queue stayed full for %.0f s during shutdown", timeout)
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
            try:
                event = self._queue.get(timeout=self._tick_s)
            except queue.Empty:
                self._guarded(self._tick, None)
                continue
            if isinstance(event, Stop):
                log.info("controller stopping: %s", event.reason)
                self._stopped.set()
                return
            self._busy = True
            self._guarded(self._handle, event)
            self._guarded(self._tick, None)
            self._busy = False

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being handled (the demo ends on this)."""
        return self._queue.empty() and not self._busy

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
            self._safe_lock()
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
            handler = self.inbound_handlers.get(event.kind)
            if handler is None:
                log.warning("no handler for inbound %s message; ignored", event.kind)
            else:
                handler(event)
        elif isinstance(event, Acked):
            pass  # the sync worker acknowledges in the entry log itself
        else:
            raise TypeError(f"unexpected controller event {event!r}")

    def process(self, event: Event) -> None:
        """Handle one event synchronously, as one loop turn (tests, and only without start())."""
        self._guarded(self._handle, event)
        self._guarded(self._tick, None)

    # ---- scans ----------------------------------------------------------------------------

    def _on_scan(self, scan: Scan) -> None:
        now = self._clock.now()
        mono = self._clock.monotonic()
        decision = self._decide(scan.text, now)
        granted, reason = decision.granted, decision.reason
        mode = self._modes.mode
        if mode == "lockdown":
            granted, reason = False, Reason.LOCKDOWN
        elif granted and self._stale(now) and self._cfg.policy.on_stale_revocations == "deny":
            granted, reason = False, Reason.REVOCATIONS_STALE
        record = True
        if not granted:
            if self._limiter.limited(mono):
                record = self._limiter.suppress(reason.value, mono)
                reason = Reason.RATE_LIMITED
            else:
                self._limiter.note_denial(mono)
        if granted and decision.replay_key is not None:
            # Before the row and the pulse: a presentation that cannot be remembered
            # could be replayed, so it is not honoured (deny on doubt).
            try:
                self.parts.replays.remember(decision.replay_key, decision.replay_until or now)
            except Exception:
                log.exception("replay cache write failed: denying this presentation")
                granted, reason = False, Reason.INTERNAL_ERROR
        pulse = granted and not self._hold
        event = self._event(
            "scan", now, granted=granted, reason=reason.value, sub=decision.sub,
            cti=decision.cti, method=scan.method, door="unlocked" if pulse else "none",
        )
        if self.parts.trust is not None:  # on_untrusted_clock = "allow": the centre sees it
            event["clock_trusted"] = self.parts.trust.trusted
        entry = self._append(event) if record else None
        self._scan_entry = entry
        if record and entry is None:
            granted, pulse, reason = False, False, Reason.INTERNAL_ERROR
        shown = {
            "type": "decision", "granted": granted, "reason": reason.value,
            "sub": decision.sub, "cti": decision.cti, "ts": event["ts"], "method": scan.method,
            "seq": getattr(entry, "seq", None), "recorded": entry is not None,
        }
        self._last.appendleft(shown)
        self._observe(shown)  # recorded already; shown before the relay line it causes
        if pulse:
            self._pulse(now)
            self.latencies.append((scan.mono, self._clock.monotonic()))
        self._show(reason)
        if entry is not None and self.parts.sync is not None:
            self.parts.sync.notify()

    def _decide(self, text: str, now: float) -> Decision:
        trusted = True
        if self.parts.trust is not None and self._cfg.policy.on_untrusted_clock == "deny":
            trusted = self.parts.trust.trusted
        try:
            return decide(
                text, self._ctx, self.parts.keyring, self.parts.revocations,
                self.parts.replays, now, clock_trusted=trusted,
            )
        except Exception:  # decide() promises never to raise; deny on doubt anyway
            log.exception("decide() raised: denying")
            return _denial(Reason.INTERNAL_ERROR, "decide raised")

    def _record_scan_failure(self, scan: Scan, exc: Exception) -> None:
        """The scan's own denial row, or, when its row was already written (a failure while
        actuating), an ``error`` row pointing at it. Never raises: this runs in the handler
        of last resort and the loop must go on."""
        try:
            now = self._clock.now()
            recorded = self._scan_entry
            if recorded is not None:
                event = self._event(
                    "error", now, granted=False, reason=Reason.INTERNAL_ERROR.value, sub=None,
                    cti=None, method=scan.method, door="locked",
                )
                event["after_seq"] = getattr(recorded, "seq", None)
                event["detail"] = f"{type(exc).__name__}: {exc}"[:200]
                self._append(event)
                return
            event = self._event(
                "scan", now, granted=False, reason=Reason.INTERNAL_ERROR.value, sub=None,
                cti=None, method=scan.method, door="none",
            )
            entry = self._append(event)
            self._show(Reason.INTERNAL_ERROR)
            self._observe({
                "type": "decision", "granted": False, "reason": Reason.INTERNAL_ERROR.value,
                "sub": None, "cti": None, "ts": event["ts"], "method": scan.method,
                "seq": getattr(entry, "seq", None), "recorded": entry is not None,
            })
        except Exception:
            log.exception("recording the failed scan failed too")

    # ---- door inputs ----------------------------------------------------------------------

    def _on_door_input(self, ev: DoorInput) -> None:
        now = self._clock.now()
        self._track_relay(now)
        unlocked = self.parts.door.unlocked
        if ev.kind == "exit":
            event = self._event(
                "exit", now, granted=True, reason=Reason.OK.value, sub=None, cti=None,
                method="exit", door="none" if self._hold else "unlocked",
            )
            if self._append(event) is not None and not self._hold:
                self._pulse(now)
            self._observe({"type": "exit", "ts": event["ts"]})
        for alarm in self._monitor.on_input(ev, now, unlocked):
            self._raise_alarm(alarm)
        if ev.kind in ("fire", "fire_clear"):
            self._apply_hold()

    def _raise_alarm(self, alarm: DoorAlarm) -> None:
        name = alarm.kind.removesuffix("_clear")
        if alarm.kind.endswith("_clear"):
            self._alarms.pop(name, None)
        else:
            self._alarms[name] = format_instant(alarm.at)
        log.warning("door alarm %s: %s", alarm.kind, alarm.detail)
        event = self._event(
            "alarm", alarm.at, granted=False, reason=alarm.kind, sub=None, cti=None,
            method="input", door="unlocked" if self.parts.door.unlocked else "locked",
        )
        event["alarm"] = alarm.kind
        event["detail"] = alarm.detail
        self._append(event)
        self._observe({"type": "alarm", "alarm": alarm.kind, "detail": alarm.detail,
                       "ts": event["ts"]})
        if self.parts.sync is not None:
            self.parts.sync.notify()

    # ---- modes (commands call set_mode) ------------------------------------------------------

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
        event = self._event(
            "mode", now, granted=False, reason=cause, sub=None, cti=None, method="remote",
            door="none",
        )
        event["mode"] = self._modes.mode
        event["until"] = format_instant(self._modes.until) if self._modes.until else None
        self._append(event)
        self._apply_hold()
        log.info("gate mode is now %s (%s)", self._modes.mode, cause)
        self._observe({"type": "mode", "mode": self._modes.mode, "until": event["until"],
                       "ts": event["ts"]})

    def open_once(self, cause: str, cmd_id: str | None = None) -> bool:
        """A remote open: recorded, then one pulse. False when not done (lockdown, no log)."""
        now = self._clock.now()
        allowed = self._modes.mode != "lockdown"
        event = self._event(
            "command", now, granted=allowed,
            reason=Reason.OK.value if allowed else Reason.LOCKDOWN.value, sub=None, cti=None,
            method="remote", door="unlocked" if allowed and not self._hold else "none",
        )
        event["command"] = cause
        if cmd_id:
            event["cmd_id"] = cmd_id
        if self._append(event) is None or not allowed:
            return False
        if not self._hold:
            self._pulse(now)
        return True

    def _pulse(self, now: float) -> None:
        unlock_s = self._cfg.door.unlock_s
        self._pulse_ends_mono = self._clock.monotonic() + unlock_s
        self.parts.door.pulse(unlock_s)
        self._relay_unlocked = True
        self._monitor.door_changed(True, now)

    def _hold_wanted(self) -> bool:
        return self._modes.mode == "free" or self._monitor.fire

    def _apply_hold(self) -> None:
        """Free mode or an active fire alarm hold the door released; otherwise locked."""
        want = self._hold_wanted()
        if want and not self._hold:
            self.parts.door.hold_unlocked()
        elif not want and self._hold:
            self.parts.door.lock()
        self._hold = want

    # ---- inbound: revocation lists -----------------------------------------------------------

    def _on_revocation_list(self, ev: Inbound) -> None:
        store = self.parts.revocations
        now = self._clock.now()
        try:
            lst = parse_revocation_list(ev.payload, self.parts.keyring, now)
        except RevocationListError as exc:
            log.warning("revocation list from the centre refused: %s", exc)
            return
        if store.version is not None and lst.version <= store.version and ev.retained:
            log.debug("retained revocation list version %d already installed", lst.version)
            return
        try:
            store.apply(lst)
        except RevocationListError as exc:
            if exc.gap and self.parts.sync is not None:
                log.warning("revocation list gap (%s): asking the centre for a full list", exc)
                self.parts.sync.request_resync(str(exc), store.version)
            else:
                log.warning("revocation list refused: %s", exc)
            return
        log.info("revocation list %s version %d installed", lst.kind, lst.version)

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
        self._track_relay(now)
        self._end_overrun_pulse(mono)
        summary = self._limiter.due_summary(mono)
        if summary is not None:
            self._record_suppressed(summary, now)
        stale = self._stale(now)
        if stale and "revocations_stale" not in self._alarms:
            log.warning("revocation list is missing or older than %.0f h",
                        self._cfg.policy.revocations_max_age_h)
            self._alarms["revocations_stale"] = format_instant(now)
        elif not stale:
            self._alarms.pop("revocations_stale", None)
        self._maintain_stores()

    def _maintain_stores(self) -> None:
        """Upkeep that must run on the thread owning the stores: compaction, recovery alarms."""
        revocations = self.parts.revocations
        if revocations.compaction_due and self._queue.empty():
            try:
                revocations.compact()
            except Exception:
                log.exception("compacting the revocation list failed; will retry when idle")
        problems = [*revocations.problems(), *self.parts.replays.problems()]
        if problems:
            self._alarms["state_recovered"] = "; ".join(problems)

    def _track_relay(self, now: float) -> None:
        """Tell the door monitor when a pulse ended (the relay times out on its own)."""
        unlocked = self.parts.door.unlocked
        if self._relay_unlocked and not unlocked:
            self._monitor.door_changed(False, now)
        self._relay_unlocked = unlocked

    def _end_overrun_pulse(self, mono: float) -> None:
        """Backstop for the relay driver: a pulse that outlived its length is ended here."""
        if self._hold or not self.parts.door.unlocked:
            return
        ends = self._pulse_ends_mono
        if ends is not None and mono < ends + RELAY_OVERRUN_S:
            return
        log.critical("relay still released %s after its pulse should have ended: locking it",
                     "with no pulse" if ends is None else f"{mono - ends:.1f} s")
        self._alarms["relay_overrun"] = format_instant(self._clock.now())
        self.parts.door.lock()
        self._pulse_ends_mono = None

    def _record_suppressed(self, summary: Suppressed, now: float) -> None:
        event = self._event(
            "rate_limit", now, granted=False, reason=Reason.RATE_LIMITED.value, sub=None,
            cti=None, method="summary", door="none",
        )
        event["suppressed"] = summary.count
        event["reasons"] = dict(summary.reasons)
        self._append(event)
        log.warning("rate limit: %d denied scans not recorded one by one (%s)", summary.count,
                    dict(summary.reasons))

    def _stale(self, now: float) -> bool:
        return revocations_stale(
            self.parts.revocations.issued_at, now, self._cfg.policy.revocations_max_age_h
        )

    # ---- helpers ---------------------------------------------------------------------------------

    def _event(
        self, kind: str, now: float, *, granted: bool, reason: str, sub: str | None,
        cti: str | None, method: str, door: str,
    ) -> dict[str, Any]:
        return {
            "ts": format_instant(now), "site": self._cfg.gate.site, "gate": self._cfg.gate.id,
            "kind": kind, "granted": granted, "reason": reason, "sub": sub, "cti": cti,
            "method": method, "door": door,
        }

    def _append(self, event: dict[str, Any]) -> Any:
        """Durable append, or None (logged loudly; the caller keeps the door locked)."""
        try:
            entry = self.parts.entry_log.append(event)
        except Exception as exc:
            self.append_failures += 1
            self._alarms["entry_log"] = f"{type(exc).__name__}: {exc}"
            log.critical("entry log append failed (%s): door stays locked", exc)
            return None
        self._alarms.pop("entry_log", None)
        return entry

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

    def _safe_lock(self) -> None:
        """After an error: lock, unless a standing hold (free mode, fire) wants it released;
        that hold is the centre's or the fire panel's decision, not the error's doing."""
        try:
            if self._hold_wanted():
                self.parts.door.hold_unlocked()
                self._hold = True
            else:
                self.parts.door.lock()
                self._hold = False
        except Exception:
            log.exception("locking the door failed")

    # ---- status ---------------------------------------------------------------------------

    def _refresh_snapshot(self) -> None:
        now = self._clock.now()
        rev = self.parts.revocations
        issued = rev.issued_at
        snapshot: dict[str, Any] = {
            "mode": self._modes.mode,
            "mode_until": format_instant(self._modes.until) if self._modes.until else None,
            "door": "unlocked" if self.parts.door.unlocked else "locked",
            "last_decisions": list(self._last),
            "revocations": {
                "version": rev.version,
                "age_s": round(now - issued, 1) if issued is not None else None,
                "stale": self._stale(now),
            },
            "clock": self._clock_status(),
            "alarms": dict(self._alarms),
            "rate_limited": self._limiter.active,
            "queue_dropped": self.dropped,
            "append_failures": self.append_failures,
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
        snap["door"] = "unlocked" if self.parts.door.unlocked else "locked"
        snap["controller_alive"] = self.alive
        if self.parts.sync is not None:
            snap["broker_connected"] = self.parts.sync.connected
        if self.parts.live_status is not None:
            try:
                snap.update(self.parts.live_status())
            except Exception as exc:
                snap["live_status_error"] = f"{type(exc).__name__}: {exc}"
        return snap


def _denial(reason: Reason, detail: str) -> Decision:
    return Decision(
        granted=False, reason=reason, sub=None, cti=None, detail=detail, replay_key=None,
        replay_until=None,
    )
