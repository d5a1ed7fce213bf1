"""The composition root of ``gate-agent run`` and ``gate-agent demo``.

Builds everything from the config in a safe order (the relay is driven locked before
anything else), starts the workers, supervises them (:mod:`agent.runtime.supervisor`:
worker restarts, systemd status, WAL checkpoints, pruning), and shuts down cleanly: sources
stopped, the controller's queue drained, the relay locked, the time floor persisted,
the offline status published, the stores closed. Like ``agent/runtime/check.py`` it is the only
place in ``agent/`` that builds ``hw`` objects (imported lazily here).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agent.core.clock import Clock, SystemClock
from agent.core.config import Config, MqttSection
from agent.core.ports import CodeSource, Door
from agent.core.timefmt import format_instant
from agent.gate.controller import Controller
from agent.gate.parts import Observer, Parts
from agent.gate.timekeeper import Timekeeper, clock_settings, system_clock_synchronised
from agent.protocol.keys import KeyRing, load_keyring
from agent.runtime.memory import freeze_startup_heap, pin_mmap_threshold
from agent.runtime.sdnotify import Notifier
from agent.runtime.supervisor import Supervisor, WatchdogPinger
from agent.store import EntryLog, Meta, RevocationStore
from agent.store.highwater import HighWater
from agent.store.replaylog import LoggedReplays
from agent.store.resend import ResendableOutbox

if TYPE_CHECKING:  # imported lazily at run time: an offline gate never loads paho
    from agent.sync.service import SyncService

log = logging.getLogger(__name__)

PinKind = Literal["env", "mock", "native"]


@dataclass
class DaemonOptions:
    """How this run differs from production (``run`` uses the defaults)."""

    pins: PinKind = "env"  # env: GPIOZERO_PIN_FACTORY=mock selects mock pins, else real GPIO
    source: Path | None = None  # a video file / image folder instead of [scanner]
    source_fps: float = 10.0
    source_loop: bool = False
    observer: Observer | None = None  # decisions, door changes, alarms (demo view, --json)
    mqtt: MqttSection | Literal["config"] | None = "config"
    extra_keyring: KeyRing | None = None  # demo: its throwaway keys, in memory only
    duration_s: float | None = None
    stop_when_source_ends: bool = False
    clock_probe: Callable[[], bool | None] | None = None


class Daemon:
    """One gate: ``open()`` builds, ``serve(stop)`` runs until stopped, ``close()`` cleans up."""

    def __init__(
        self,
        config: Config,
        options: DaemonOptions | None = None,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.options = options or DaemonOptions()
        self.clock: Clock = clock or SystemClock()
        self.notifier = notifier or Notifier()
        self._observe_lock = threading.Lock()
        self._closers: list[tuple[str, Callable[[], None]]] = []
        self.controller: Controller | None = None
        self.sync: SyncService | None = None
        self.source: CodeSource | None = None
        self.entry_log: EntryLog | None = None
        self.timekeeper: Timekeeper | None = None
        self.highwater: HighWater | None = None
        self.door: Door | None = None
        self.inputs: Any = None
        self.frame_tap: Any = None  # hw.preview.FrameTap when [web] is enabled
        self.web: Any = None  # agent.runtime.web.server.WebServer

    # ---- building ----------------------------------------------------------------------

    def open(self) -> None:
        """Build every part; on any failure, what was built is closed (relay locked)."""
        pin_mmap_threshold()  # a refused big payload must not stay resident
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        from agent.runtime.hwsettings import indicator_settings, relay_settings
        from hw.door import RelayDoor
        from hw.indicators import make_indicators
        from hw.pins import make_pin_factory, pin_factory_from_env

        cfg = self.config
        factory = (
            pin_factory_from_env() if self.options.pins == "env"
            else make_pin_factory(self.options.pins)
        )
        self._closers.append(("pins", factory.close))
        # First thing that touches a pin: the relay, driven to locked.
        self.door = RelayDoor(relay_settings(cfg.door), factory, on_change=self._door_changed)
        self._closers.append(("door", self.door.close))
        indicators = make_indicators(indicator_settings(cfg.indicators), factory)
        self._closers.append(("indicators", indicators.close))

        state = cfg.state.dir
        # meta.json first and closed last: the entry log keeps its second copy of the
        # high-water marks there and records a clean close in it.
        meta = Meta(state)
        self._closers.append(("meta", meta.close))
        policy = cfg.policy
        self.entry_log = EntryLog(
            state, capacity=cfg.state.outbox_capacity, retention_days=cfg.state.retention_days,
            meta=meta, replay_guard_s=policy.presentation_window_s + policy.clock_skew_s + 1.0,
        )
        self._closers.append(("entry log", self.entry_log.close))
        self.highwater = self.entry_log.highwater
        revocations = RevocationStore(state, highwater=self.highwater)
        self._closers.append(("revocations", revocations.close))
        replays = LoggedReplays(self.entry_log)
        probe = self.options.clock_probe
        self.timekeeper = Timekeeper(self.clock, meta, probe or system_clock_synchronised,
                                     settings=clock_settings(cfg.clock),
                                     marks=self.highwater)
        self._closers.append(("time floor", self.timekeeper.persist))

        keyring = load_keyring(cfg.trust.keys_dir, cfg.trust.ops_keys_dir)
        if self.options.extra_keyring is not None:
            keyring = KeyRing.of(*keyring.keys(), *self.options.extra_keyring.keys())
        if not len(keyring):
            log.warning("no trusted keys in %s / %s: every code will be unknown_key",
                        cfg.trust.keys_dir, cfg.trust.ops_keys_dir)

        outbox = ResendableOutbox(self.entry_log)
        parts = Parts(
            config=cfg, clock=self.timekeeper, door=self.door, indicators=indicators,
            keyring=keyring, revocations=revocations, replays=replays, meta=meta,
            entry_log=self.entry_log, trust=self.timekeeper,
            outbox=outbox, observer=self._observe if self.options.observer else None,
            live_status=self._live_status,
        )
        if self.notifier.enabled:
            every = (self.notifier.watchdog_s or 30.0) / 3
            parts.heartbeat = WatchdogPinger(self.notifier, min(every, 5.0))
        self.controller = Controller(parts)

        mqtt = cfg.mqtt if self.options.mqtt == "config" else self.options.mqtt
        if mqtt is not None:
            from agent.gate.inbound import CAPS
            from agent.protocol.keys import load_in_place_verifier
            from agent.sync.service import SyncService

            load_in_place_verifier()  # big lists arrive over MQTT: its memory counted now
            self.sync = SyncService(mqtt, cfg.gate.site, cfg.gate.id, outbox,
                                    self.controller.on_inbound, self.controller.status,
                                    payload_caps=CAPS)
            self.controller.attach_sync(self.sync)
        self._inputs_factory = factory
        if cfg.web.enabled:
            from hw.preview import FrameTap

            self.frame_tap = FrameTap()
        self.source = self.make_source()
        if cfg.web.enabled:
            self.web = self._make_web()
            if self.web is not None:
                self._closers.append(("installer page", self.web.stop))

    def _make_web(self) -> Any:
        """The installer page; a page that cannot start leaves the gate working without it."""
        from agent.runtime.web.live import LiveGate
        from agent.runtime.web.server import WebServer

        try:
            return WebServer(LiveGate(self, self.frame_tap))
        except OSError as exc:
            log.error("installer page not started: cannot listen on %s (%s); fix [web] bind",
                      self.config.web.bind, exc)
            return None

    def make_source(self) -> CodeSource | None:
        source = self._new_source()
        attach = getattr(source, "attach_tap", None)  # camera-like sources only
        if self.frame_tap is not None and attach is not None:
            attach(self.frame_tap)
        return source

    def _new_source(self) -> CodeSource | None:
        cfg = self.config
        if self.options.source is not None:
            from hw.decoders import make_decoder
            from hw.sources import SimulatedSource

            return SimulatedSource(self.options.source, self.options.source_fps,
                                   cfg.scanner.dedupe_s, make_decoder(cfg.camera.decoder),
                                   loop=self.options.source_loop)
        if cfg.scanner.kind == "camera":
            from agent.runtime.hwsettings import camera_settings
            from hw.camera import CameraSource
            from hw.decoders import make_decoder

            return CameraSource(camera_settings(cfg.camera), cfg.scanner.dedupe_s,
                                make_decoder(cfg.camera.decoder))
        if cfg.scanner.kind == "serial":
            from agent.protocol.qrtext import MAX_QR_TEXT
            from agent.runtime.hwsettings import serial_settings
            from hw.serial_scanner import SerialSource

            return SerialSource(serial_settings(cfg.serial), cfg.scanner.dedupe_s,
                                MAX_QR_TEXT + 2)
        return None

    # ---- running -------------------------------------------------------------------------

    def start(self) -> None:
        from agent.runtime.hwsettings import input_settings
        from hw.inputs import DoorInputs

        assert self.controller is not None
        cfg = self.config
        self.controller.start()
        if any(p is not None for p in (cfg.door.contact_pin, cfg.door.exit_pin,
                                       cfg.door.tamper_pin, cfg.door.fire_pin)):
            inputs = DoorInputs(input_settings(cfg.door), self._inputs_factory,
                                self.controller.on_door_input)
            self._closers.append(("inputs", inputs.close))
            self.inputs = inputs
        if self.sync is not None:
            self.sync.start()
        if self.source is not None:
            self.source.start_scans(self.controller.on_scan)
        if self.web is not None:
            self.web.start()
            self._observe({"type": "web", "url": self.web.url, "port": self.web.port})
        freeze_startup_heap()  # no full GC pass over the start-up heap on a scan's path
        self.notifier.ready(self.status_line())
        log.info("gate %s/%s ready: %s", cfg.gate.site, cfg.gate.id, self.status_line())

    def serve(self, stop: threading.Event) -> int:
        """Supervise until ``stop`` is set (or the duration / the source ends); exit code
        (:class:`agent.runtime.supervisor.Supervisor`)."""
        return Supervisor(self).run(stop)

    def shutdown(self) -> None:
        """Stop sources, drain the controller, lock, say goodbye, close (idempotent)."""
        self.notifier.stopping("stopping: locking the door")
        if self.web is not None:
            try:
                self.web.stop()
            except Exception:
                log.exception("stopping the installer page failed")
        if self.source is not None:
            try:
                self.source.stop(3.0)
            except Exception:
                log.exception("stopping the scanner failed")
        if self.controller is not None:
            self.controller.stop(10.0)
        if self.door is not None:
            try:
                self.door.lock()
            except Exception:  # close() below still drives it locked and frees the pin
                log.exception("locking the door at shutdown failed")
        if self.sync is not None:
            try:
                self.sync.stop(5.0)  # publishes the retained offline status
            except Exception:
                log.exception("stopping the sync worker failed")
        self.close()

    def close(self) -> None:
        while self._closers:
            name, closer = self._closers.pop()
            try:
                closer()
            except Exception:
                log.exception("closing %s failed", name)

    # ---- status ------------------------------------------------------------------------------

    def _live_status(self) -> dict[str, Any]:
        live: dict[str, Any] = {}
        if self.source is not None:
            live["scanner"] = self.source.status()
        if self.entry_log is not None:
            out = self.entry_log.status()
            live["backlog"] = out.backlog
            live["outbox"] = out.to_json()
        if self.highwater is not None:  # every recovery and downgrade, until cleared
            live["recoveries"] = self.highwater.recoveries()
        live["broker"] = (
            "connected" if self.sync is not None and self.sync.connected
            else "offline" if self.sync is None else "connecting"
        )
        if self.sync is not None:  # payloads over their topic's cap, refused on arrival
            live["inbound_oversize"] = self.sync.oversize
        return live

    def status_line(self) -> str:
        """One line for systemd's STATUS= and the log."""
        if self.controller is None:
            return "starting"
        snap = self.controller.status()
        version = snap["revocations"]["version"]
        revocations = "none installed" if version is None else f"v{version}"
        return (
            f"door {snap['door']}, mode {snap['mode']}, backlog {snap.get('backlog', '?')}, "
            f"broker {snap.get('broker', 'offline')}, revocations {revocations}"
        )

    def _door_changed(self, state: str) -> None:
        self._observe({"type": "door", "state": state, "ts": format_instant(time.time())})

    def _observe(self, item: dict[str, Any]) -> None:
        """Observer calls come from the controller and the relay timer: one at a time."""
        observer = self.options.observer
        if observer is not None:
            with self._observe_lock:
                observer(item)
