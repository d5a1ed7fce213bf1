"""State upkeep on the controller thread: what the gate lacks, it asks for until it has it.

- Revocation lists from the centre: verified and installed; a list the store refuses
  for a gap, or while the installed list is ``unknown`` (lost, downgraded, never had),
  makes the gate ask for a full list (``resync``) at once and again every
  ``RESYNC_EVERY_S`` while connected; a list that failed to install on a write error
  (disk full, read-only card) is kept and installed again every ``RETRY_EVERY_S``.
- Time: when a broker answers (``Inbound("connected")``) and at intervals while the
  clock is untrusted, a time request with a fresh nonce (agent.gate.timekeeper).
- The entry log's own upkeep with the decision clock (replay keys pruned, marks kept).

Registered into ``Controller.inbound_handlers`` and called from the controller's tick.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Protocol

from agent.core.clock import Clock
from agent.core.errors import RevocationListError, StateError
from agent.core.events import Inbound
from agent.protocol.keys import KeyRing
from agent.protocol.revocation import RevocationList
from agent.protocol.revstream import CompactList, parse_compact_list

log = logging.getLogger(__name__)

RESYNC_EVERY_S = 30.0
RETRY_EVERY_S = 10.0


class ListStore(Protocol):
    version: int | None

    @property
    def state(self) -> str: ...

    def apply(self, lst: RevocationList | CompactList) -> None: ...


class UpkeepSync(Protocol):
    """The link to the centre (SyncService); ``connected`` and ``request_time`` are used
    when it has them (a stand-in in tests may not)."""

    def request_resync(self, reason: str, have_version: int | None = None) -> None: ...


class TimeSource(Protocol):
    def time_request(self, connected_now: bool = False) -> dict[str, Any] | None: ...


class LogUpkeep(Protocol):
    def maintain(self, now: float, mono: float) -> None: ...


class Upkeep:
    """Revocation intake with retries, resync and time requests, store maintenance."""

    def __init__(
        self, clock: Clock, keyring: KeyRing, revocations: ListStore,
        sync: UpkeepSync | None = None, timekeeper: TimeSource | None = None,
        entry_log: LogUpkeep | object | None = None, refused: Counter[str] | None = None,
    ) -> None:
        """``refused``: counts of signed messages refused here, by kind (for the status)."""
        self.refused: Counter[str] = refused if refused is not None else Counter()
        self._clock = clock
        self._keyring = keyring
        self._store = revocations
        self.sync = sync
        self._timekeeper = timekeeper
        self._entry_log = entry_log
        self._pending: CompactList | None = None  # failed on a write error: retried
        self._retry_at: float | None = None
        self._resync_at: float | None = None  # monotonic time of the next resync request
        self.install_failures = 0

    def install(self, handlers: dict[str, Any]) -> None:
        handlers["revocations_full"] = self.on_list
        handlers["revocations_delta"] = self.on_list
        handlers["connected"] = self.on_connected

    # ---- inbound

    def on_list(self, ev: Inbound) -> None:
        try:
            lst = parse_compact_list(ev.payload, self._keyring, self._clock.now())
        except RevocationListError as exc:
            log.warning("revocation list from the centre refused: %s", exc)
            self.refused["revocations"] += 1
            return
        store = self._store
        if (store.state == "ok" and store.version is not None and lst.version <= store.version
                and ev.retained):
            log.debug("retained revocation list version %d already installed", lst.version)
            return
        self._install(lst)

    def on_connected(self, _: Inbound | None = None) -> None:
        """A broker answered: ask at once for what is missing."""
        if self._store.state != "ok":
            self._resync("the installed revocation list is unknown")
        self._ask_time(connected_now=True)

    # ---- tick

    def tick(self) -> None:
        mono = self._clock.monotonic()
        if self._pending is not None and self._retry_at is not None and mono >= self._retry_at:
            log.info("installing revocation list version %d again", self._pending.version)
            self._install(self._pending)
        if self._store.state != "ok" and self._connected() and (
                self._resync_at is None or mono >= self._resync_at):
            self._resync("the installed revocation list is unknown")
        self._ask_time()
        maintain = getattr(self._entry_log, "maintain", None)  # the SQLite entry log's
        if maintain is not None:
            maintain(self._clock.now(), mono)

    # ---- internals

    def _install(self, lst: CompactList) -> None:
        store = self._store
        try:
            store.apply(lst)
        except RevocationListError as exc:
            if self._pending is lst:
                self._pending = None  # superseded meanwhile: nothing left to retry
            if exc.gap or store.state != "ok":
                self._resync(str(exc))
            else:
                log.warning("revocation list refused: %s", exc)
            return
        except StateError as exc:
            self.install_failures += 1
            self._pending = lst
            self._retry_at = self._clock.monotonic() + RETRY_EVERY_S
            log.error("revocation list version %d not installed (%s): retrying every %.0f s",
                      lst.version, exc, RETRY_EVERY_S)
            return
        self._pending = None
        log.info("revocation list %s version %d installed", lst.kind, lst.version)
        publish = getattr(self.sync, "publish_status_now", None)
        if publish is not None:  # the centre sees the new version (and state) at once
            publish()
        if store.state != "ok":
            self._resync(f"version {lst.version} is still older than the gate's high-water mark")

    def _resync(self, reason: str) -> None:
        self._resync_at = self._clock.monotonic() + RESYNC_EVERY_S
        if self.sync is None:
            return
        log.warning("asking the centre for a full revocation list: %s", reason)
        self.sync.request_resync(reason, self._store.version)

    def _connected(self) -> bool:
        return bool(getattr(self.sync, "connected", False))

    def _ask_time(self, connected_now: bool = False) -> None:
        if self._timekeeper is None or not (connected_now or self._connected()):
            return
        send = getattr(self.sync, "request_time", None)
        if send is None:
            return
        request = self._timekeeper.time_request(connected_now)
        if request is not None:
            send(request)
