"""What the daemon's main thread does while the gate runs: watch the workers, keep the books.

:class:`Supervisor` is ``Daemon.serve``: every 0.2 s it checks that the controller loop
lives (a dead one ends the run with exit 1, so systemd restarts the gate) and whether the
run is over (``--duration``, or the simulated source played out and its last pulse
ended); on their own periods it restarts a scanner or sync worker whose thread died,
sends systemd its STATUS line, checkpoints the entry log's WAL (off the scan path: an
append never copies the WAL itself) and prunes acknowledged entries past retention.
:class:`WatchdogPinger` is the controller loop's heartbeat to systemd's watchdog.

Part of the composition root: only :mod:`agent.runtime.daemon` builds these.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from agent.runtime.sdnotify import Notifier

if TYPE_CHECKING:
    from agent.runtime.daemon import Daemon

log = logging.getLogger(__name__)

TICK_S = 0.2
STATUS_EVERY_S = 5.0
PRUNE_EVERY_S = 3600.0
CHECKPOINT_EVERY_S = 5.0  # the entry log's WAL, copied back off the scan path
SUPERVISE_EVERY_S = 2.0


class WatchdogPinger:
    """WATCHDOG=1 at most every ``every_s``, called from the controller loop's heartbeat."""

    def __init__(self, notifier: Notifier, every_s: float) -> None:
        self._notifier = notifier
        self._every_s = every_s
        self._last = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= self._every_s:
            self._last = now
            self._notifier.watchdog()


class Supervisor:
    """The main thread's loop over a started :class:`Daemon` (its parts, not its build)."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def run(self, stop: threading.Event) -> int:
        """Supervise until ``stop`` is set (or the duration / the source ends); exit code."""
        daemon = self._daemon
        controller, options = daemon.controller, daemon.options
        assert controller is not None and daemon.entry_log is not None
        started = time.monotonic()
        last_status = last_prune = last_check = last_checkpoint = started
        while not stop.wait(TICK_S):
            now = time.monotonic()
            if not controller.alive:
                log.critical("controller loop died: stopping (systemd restarts the gate)")
                return 1
            if options.duration_s is not None and now - started >= options.duration_s:
                break
            if options.stop_when_source_ends and self._source_done():
                break
            if now - last_check >= SUPERVISE_EVERY_S:
                last_check = now
                self._restart_dead_workers()
            if now - last_status >= STATUS_EVERY_S:
                last_status = now
                if daemon.notifier.enabled:  # the line reads the whole status: only for systemd
                    daemon.notifier.status(daemon.status_line())
            if now - last_checkpoint >= CHECKPOINT_EVERY_S:
                last_checkpoint = now
                self._checkpoint()
            if now - last_prune >= PRUNE_EVERY_S:
                last_prune = now
                self._prune()
        return 0

    def _source_done(self) -> bool:
        """The clip has played, every scan was handled and the last pulse has ended."""
        daemon = self._daemon
        assert daemon.controller is not None
        if daemon.source is None or not daemon.source.finished.is_set():
            return False
        return daemon.controller.idle and not (daemon.door is not None and daemon.door.unlocked)

    def _restart_dead_workers(self) -> None:
        """Restart a worker whose thread died; the door stays as the controller left it."""
        daemon = self._daemon
        source = daemon.source
        if source is not None and daemon.options.source is None:
            state = source.status().get("state")
            if state in ("stopped", "finished", "failed"):
                log.error("scanner stopped unexpectedly (%s): restarting it", state)
                try:
                    source.stop(1.0)
                    daemon.source = daemon.make_source()
                    assert daemon.controller is not None and daemon.source is not None
                    daemon.source.start_scans(daemon.controller.on_scan)
                except Exception:
                    log.exception("restarting the scanner failed; retrying later")
        sync = daemon.sync
        if sync is not None and not sync.alive:
            log.error("sync worker died: restarting it")
            try:
                sync.start()
            except Exception:
                log.exception("restarting the sync worker failed; retrying later")

    def _checkpoint(self) -> None:
        entry_log = self._daemon.entry_log
        assert entry_log is not None
        try:
            entry_log.checkpoint()
        except Exception as exc:  # busy or locked: the next run (or SQLite's backstop) does it
            log.warning("checkpointing the entry log failed (%s); retrying later", exc)

    def _prune(self) -> None:
        entry_log = self._daemon.entry_log
        assert entry_log is not None
        try:
            removed = entry_log.prune()
            if removed:
                log.info("pruned %d acknowledged entries past retention", removed)
        except Exception:
            log.exception("pruning the entry log failed")
