"""``gate-centre run``: ingest, acknowledge, answer, sweep. Threads, each named and stoppable:

- ``centre-mqtt`` (``CentreLink``): the broker connection; paho's callback only enqueues.
- ``centre-writer``: takes events, statuses and command results off the queue in batches
  (``[store] batch_max`` rows or ``batch_ms`` old, at most ``batch_per_gate`` events of
  one gate: ``agent.centre.batching``), commits them, and only then publishes the
  exact stored seqs on each gate's ``events/ack`` and sends the PUBACKs. A failing
  database is retried with backoff on the same batch: nothing is acknowledged that is
  not committed, and the broker keeps the unacknowledged messages in flight meanwhile.
- ``centre-answers``: time requests (signed time with the gate's nonce) and ``resync``
  requests (the newest full revocation list, re-published; read from the store, or the
  cached copy while it is down), so a database outage does not stop the time service.
- ``centre-sweep``: holes -> signed ``resend`` commands, unpublished revocation lists,
  and the signed time broadcast every ``[time] publish_every_s``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.centre.batching import Batcher
from agent.centre.config import CentreConfig
from agent.centre.link import CentreLink, Message
from agent.centre.store import holes, revocations
from agent.centre.store.db import Database, StoreError, connect
from agent.centre.store.ingest import (
    Incoming,
    StatusUpdate,
    parse_event,
    parse_status,
    record_status,
    store_events,
)
from agent.centre.store.schema import check_current
from agent.centre.web import records
from agent.core.backoff import Backoff
from agent.core.bounds import MQTT_LIST_BYTES
from agent.protocol.command import make_command, sign_command
from agent.protocol.keys import KeyRing, SigningKey
from agent.protocol.timemsg import is_nonce, sign_time
from agent.sync.broker import BrokerSettings
from agent.sync.topics import REVOCATIONS_DELTA, REVOCATIONS_FULL, ROOT, TIME, GateTopics

log = logging.getLogger(__name__)

RESEND_TTL_S = 600


@dataclass
class Counters:
    """What the service did so far (status line, tests, benchmark)."""

    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    batches: int = 0
    store_failures: int = 0
    acks_published: int = 0
    resends: int = 0
    times: int = 0
    resyncs: int = 0
    heartbeat: float = field(default_factory=time.monotonic)


def subscriptions(group: str) -> list[str]:
    """Shared (one process handles each message) except status: every process sees it
    (retained messages are not sent to shared subscriptions)."""
    shared = f"$share/{group}/{ROOT}/+/+"
    return [f"{shared}/events", f"{shared}/cmd/result", f"{shared}/resync",
            f"{shared}/time/request", f"{ROOT}/+/+/status"]


class CentreService:
    def __init__(self, config: CentreConfig, settings: BrokerSettings, key: SigningKey,
                 kid: str, trust: KeyRing, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.key, self.kid, self.trust = key, kid, trust
        self.clock = clock
        self.counters = Counters()
        self._writes: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        store = config.store
        self._batcher = Batcher(self._writes, store.batch_max, store.batch_ms,
                                store.batch_per_gate)
        self._answers: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._full: tuple[int, bytes] | None = None  # latest signed full list (cache)
        self._known_gates: set[tuple[str, str]] = set()
        self._next_audit = 0.0  # monotonic; the first sweep audits the marks
        self.link = CentreLink(settings, f"gate-centre-{config.centre.id}-{time.time_ns():x}",
                               subscriptions(config.mqtt.share_group), self._route,
                               on_connect=self._connected,
                               reconnect_max_s=config.mqtt.reconnect_max_s)
        self._threads = [threading.Thread(target=self._guard(self._write_loop),
                                          name="centre-writer", daemon=True),
                         threading.Thread(target=self._guard(self._answer_loop),
                                          name="centre-answers", daemon=True),
                         threading.Thread(target=self._guard(self._sweep_loop),
                                          name="centre-sweep", daemon=True)]

    # ---- lifecycle

    def start(self) -> None:
        db = connect(self.config.store.url)  # fail fast on a missing or old schema
        try:
            check_current(db)
            self._full = revocations.ensure_first_list(db, key=self.key, kid=self.kid,
                                                       trust=self.trust, now=self.clock())
        finally:
            db.close()
        for thread in self._threads:
            thread.start()
        self.link.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand (commit and acknowledge it), then disconnect."""
        self._stop.set()
        self._writes.put(None)
        self._answers.put(None)
        for thread in self._threads:
            thread.join(timeout)
            if thread.is_alive():
                log.error("thread %s did not stop within %.1f s", thread.name, timeout)
        self.link.stop()

    @property
    def healthy(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def _guard(self, loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    loop()
                    return
                except Exception:  # a bug must not end ingest: log it and start over
                    log.exception("%s failed; restarting it", threading.current_thread().name)
                    self._stop.wait(1.0)
        return run

    # ---- routing (paho thread: hand off only)

    def _route(self, msg: Message) -> None:
        if msg.topic.endswith(("/time/request", "/resync")):
            self._answers.put(msg)
        else:
            self._writes.put(msg)

    def _connected(self) -> None:
        full = self._latest_full()
        if full is not None:  # the retained list may be gone after a broker restart
            self.link.publish(REVOCATIONS_FULL, full[1], retain=True)
        self._broadcast_time()

    def _latest_full(self) -> tuple[int, bytes] | None:
        """The newest signed full list, read from the store (another process or the CLI
        may have made a newer one than this process saw: re-publishing an older one
        would replace the retained newer list); the cached copy when the store is down."""
        try:
            db = connect(self.config.store.url)
            try:
                full = revocations.latest_full(db)
            finally:
                db.close()
        except StoreError as exc:
            log.warning("revocation list read from the cache (%s)", exc)
            return self._full
        if full is not None and (self._full is None or full[0] >= self._full[0]):
            self._full = full
        return self._full

    # ---- writer

    def _write_loop(self) -> None:
        backoff = Backoff(0.2, 10.0)
        db: Database | None = None
        batch: list[Message] = []
        while True:
            if not batch:
                batch = self._batcher.take()
            self.counters.heartbeat = time.monotonic()
            if not batch:
                if self._stop.is_set():
                    break
                continue
            try:
                if db is None:
                    db = connect(self.config.store.url)
                self._commit(db, batch)
                batch = []
                backoff.reset()
            except StoreError as exc:
                self.counters.store_failures += 1
                if db is not None:
                    db.close()
                    db = None
                delay = backoff.next_delay()
                log.error("store failed, %d message(s) held unacknowledged, retrying in "
                          "%.1f s: %s", len(batch), delay, exc)
                if self._stop.wait(delay):
                    break
        if db is not None:
            db.close()

    def _commit(self, db: Database, batch: list[Message]) -> None:
        events: list[tuple[Message, Incoming]] = []
        statuses: list[StatusUpdate] = []
        results: list[tuple[Message, dict[str, object]]] = []
        done: list[Message] = []  # acknowledged after the commit whatever they were
        for msg in batch:
            try:
                if msg.topic.endswith("/events"):
                    events.append((msg, parse_event(msg.topic, msg.payload, msg.received_at)))
                    continue
                if msg.topic.endswith("/status"):
                    update = parse_status(msg.topic, msg.payload, msg.received_at, msg.retained)
                    if update is not None:
                        statuses.append(update)
                elif msg.topic.endswith("/cmd/result"):
                    body = json.loads(msg.payload)
                    if isinstance(body, dict):
                        results.append((msg, body))
            except ValueError as exc:
                self.counters.rejected += 1
                log.warning("refused a message on %s: %s", msg.topic, exc)
            done.append(msg)
        result = store_events(db, [i for _, i in events], self._known_gates) if events else None
        if statuses:
            with db.transaction():
                for update in statuses:
                    record_status(db, update)
        for msg, body in results:
            parts = msg.topic.split("/")
            answer = (parts[2], parts[3], str(body.get("id", "")), body.get("ok") is True,
                      str(body.get("reason", "")), str(body.get("detail", "")), self.clock())
            if not holes.command_result(db, *answer):
                records.record_result(db, *answer)  # a console command's result
        # Committed: now, and only now, tell the gates and the broker.
        if result is not None:
            self.counters.stored += result.new
            self.counters.duplicates += result.duplicates
            self.counters.conflicts += len(result.conflicts)
            for (site, gate), seqs in result.acks.items():
                payload = json.dumps({"seqs": seqs}, separators=(",", ":")).encode()
                if self.link.publish(GateTopics(site, gate).events_ack, payload):
                    self.counters.acks_published += 1
            for item, stored_id in result.conflicts:
                log.error("CONFLICT: %s/%s seq %d arrived with id %s but %s is stored "
                          "(a restored or cloned gate?): kept apart in the conflicts table",
                          item.site, item.gate, item.seq, item.id, stored_id)
        self._ack(batch)
        self.counters.batches += 1

    def _ack(self, batch: list[Message]) -> None:
        """PUBACK a committed batch, QoS 1 messages grouped by the connection they came on."""
        by_connection: dict[int, list[int]] = {}
        for msg in batch:
            if msg.qos == 1:
                by_connection.setdefault(msg.generation, []).append(msg.mid)
            elif msg.qos:
                self.link.ack(msg.generation, msg.mid, msg.qos)
        for generation, mids in by_connection.items():
            self.link.ack_many(generation, mids)

    # ---- answers (time needs no database; resync reads one row)

    def _answer_loop(self) -> None:
        last_resync: dict[str, float] = {}
        while not self._stop.is_set():
            try:
                msg = self._answers.get(timeout=0.5)
            except queue.Empty:
                continue
            if msg is None:
                break
            parts = msg.topic.split("/")
            if len(parts) >= 5:
                topics = GateTopics(parts[2], parts[3])
                if msg.topic == topics.time_request:
                    self._answer_time(topics, msg.payload)
                elif msg.topic == topics.resync:
                    now = time.monotonic()
                    if now - last_resync.get(topics.base, -60.0) >= 1.0:  # a burst: once
                        last_resync[topics.base] = now
                        self._answer_resync()
            self.link.ack(msg.generation, msg.mid, msg.qos)

    def _answer_time(self, topics: GateTopics, payload: bytes) -> None:
        try:
            body = json.loads(payload)
            nonce = body.get("nonce") if isinstance(body, dict) else None
        except ValueError:
            nonce = None
        if not is_nonce(nonce):
            log.warning("ignored a time request on %s without a 32-hex nonce",
                        topics.time_request)
            return
        assert isinstance(nonce, str)
        self.link.publish(topics.time, sign_time(self.clock(), self.key, self.kid, nonce=nonce))
        self.counters.times += 1

    def _answer_resync(self) -> None:
        full = self._latest_full()
        if full is not None:
            self.link.publish(REVOCATIONS_FULL, full[1], retain=True)
            self.counters.resyncs += 1

    def _broadcast_time(self) -> None:
        if self.link.publish(TIME, sign_time(self.clock(), self.key, self.kid)):
            self.counters.times += 1

    # ---- sweeper

    def _sweep_loop(self) -> None:
        every = self.config.sweep.every_s
        time_every = self.config.time.publish_every_s
        next_time = time.monotonic() + (time_every or 0)
        next_sweep = time.monotonic() + min(every, 1.0)
        db: Database | None = None
        backoff = Backoff(every, max(every, 30.0))
        while not self._stop.wait(max(0.05, min(next_sweep, next_time if time_every else
                                                    next_sweep) - time.monotonic())):
            now_m = time.monotonic()
            if time_every and now_m >= next_time:
                self._broadcast_time()
                next_time = now_m + time_every
            if now_m < next_sweep:
                continue
            next_sweep = now_m + every
            try:
                if db is None:
                    db = connect(self.config.store.url)
                self._sweep(db)
                backoff.reset()
            except StoreError as exc:
                next_sweep = now_m + backoff.next_delay()
                log.warning("sweep skipped: %s", exc)
                if db is not None:
                    db.close()
                    db = None
        if db is not None:
            db.close()

    def _sweep(self, db: Database) -> None:
        now = self.clock()
        if time.monotonic() >= self._next_audit:
            for site, gate, old, new in holes.audit(db):
                log.error("%s/%s: rows missing below seq %d (deleted from the store?): "
                          "looking for holes again from seq %d", site, gate, old, new + 1)
            self._next_audit = time.monotonic() + self.config.sweep.audit_every_s
        holes.sweep(db, now)
        sweep = self.config.sweep
        for hole in holes.due_resends(db, now, hole_after_s=sweep.hole_after_s,
                                      resend_every_s=sweep.resend_every_s,
                                      attempts=sweep.resend_attempts):
            cmd = make_command("resend", f"{hole.site}/{hole.gate}", now=now,
                               ttl_s=RESEND_TTL_S, seqs=(hole.first, hole.last))
            holes.note_command(db, hole, cmd.id)
            if self.link.publish(GateTopics(hole.site, hole.gate).cmd,
                                 sign_command(cmd, self.key, self.kid)):
                self.counters.resends += 1
                log.warning("hole %s/%s seq %d-%d (attempt %d): resend requested",
                            hole.site, hole.gate, hole.first, hole.last, hole.resends)
        self._publish_revocations(db)

    def _publish_revocations(self, db: Database) -> None:
        pending = revocations.unpublished(db)
        full = revocations.latest_full(db)
        if full is not None and (self._full is None or full[0] != self._full[0]):
            self._full = full
            if len(full[1]) > MQTT_LIST_BYTES:  # gates' brokers drop it for them
                log.warning("full revocation list version %d is %d bytes, over the %d gates "
                            "take over MQTT: gates that need a full list must get it as a "
                            "file (gate-agent revocations apply)", full[0], len(full[1]),
                            MQTT_LIST_BYTES)
        if not pending or full is None or not self.link.connected:
            return
        for _version, delta in pending:
            self.link.publish(REVOCATIONS_DELTA, delta)
        if self.link.publish(REVOCATIONS_FULL, full[1], retain=True):
            revocations.mark_published(db, pending[-1][0], self.clock())
