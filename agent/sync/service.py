"""SyncService: the gate's one MQTT worker thread, started and stopped by the daemon.

The worker owns the connection, every paho call and paho's network loop itself
(``Link.pump``: no second network thread): connect with backoff + jitter, treat only an
accepted CONNACK as connected, subscribe and count as connected only at the SUBACK,
publish the retained birth status, drain the outbox (``UplinkDrain``), publish command
results, resync requests and periodic status, and notice a lost connection to start
again from the oldest unacknowledged event. Other threads reach it through a
``Mailbox``, whose socket ends the worker's wait on the broker's socket.

Inbound messages are handed to ``deliver`` as ``agent.core.events.Inbound`` from the
worker thread, inside the network loop: ``deliver`` must only enqueue (the controller
verifies and applies). After each accepted CONNACK and SUBACK, ``deliver`` also gets
``Inbound("connected", b"")``, so the controller asks for what it lacks (fresh time, a
full revocation list) at once: from then on the gate's subscriptions are live, so a
command published after it reaches the gate. ``status`` is called on the worker thread
and must return a snapshot dict without touching the controller's TinyDB state (e.g. a
copy the controller refreshes).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from agent.core.backoff import Backoff
from agent.core.clock import Clock, SystemClock
from agent.core.config import MqttSection
from agent.core.events import Inbound
from agent.core.timefmt import format_instant
from agent.sync.broker import BrokerSettings, settings_from_config
from agent.sync.link import Link, LinkError, LinkSignal, Will, closed_before_connack, refused
from agent.sync.mailbox import CentreAck, Item, Mailbox, Outgoing, Wake
from agent.sync.router import InboundRouter
from agent.sync.status import StatusSource, status_payload, will_payload
from agent.sync.topics import GateTopics, client_id
from agent.sync.uplink import Acknowledger, CentreAcknowledger, Outbox, UplinkDrain

log = logging.getLogger(__name__)

CONNACK_TIMEOUT_S = 10.0
GOODBYE_TIMEOUT_S = 2.0
MAX_QUEUED_OUTGOING = 200


class SyncService:
    """Start/stop facade over the sync worker; every public method is thread-safe."""

    def __init__(
        self,
        mqtt: MqttSection | BrokerSettings,
        site: str,
        gate: str,
        entry_log: Outbox,
        deliver: Callable[[Inbound], None],
        status: StatusSource | None = None,
        *,
        inflight: int | None = None,
        status_interval_s: float | None = None,
        poll_s: float = 0.25,
        reconnect_max_s: float | None = None,
        reconnect_min_s: float = 0.5,
        acknowledger: Acknowledger | None = None,
        clock: Clock | None = None,
        payload_caps: Mapping[str, int] | None = None,
    ) -> None:
        if isinstance(mqtt, MqttSection):
            self.settings = settings_from_config(mqtt)
            inflight = inflight or mqtt.inflight
            status_interval_s = status_interval_s or float(mqtt.status_interval_s)
            reconnect_max_s = reconnect_max_s or mqtt.reconnect_max_s
            if acknowledger is None and mqtt.ack == "centre":
                acknowledger = CentreAcknowledger(time.monotonic, mqtt.ack_timeout_s)
        else:
            self.settings = mqtt
        self.site = site
        self.gate = gate
        self.topics = GateTopics(site, gate)
        window = inflight or 100
        self.drain = UplinkDrain(entry_log, self.topics.events, window, acknowledger,
                                 batch=max(50, window // 2), refill=max(1, window // 4))
        self._deliver = deliver
        self._status = status
        self._status_interval_s = status_interval_s or 60.0
        self._poll_s = poll_s
        self._backoff = Backoff(reconnect_min_s, max(reconnect_min_s, reconnect_max_s or 30.0))
        self._clock: Clock = clock or SystemClock()
        # Largest payload per Inbound.kind, checked inside pump() before anything is
        # queued or copied; the largest is stated to the broker (Maximum Packet Size).
        self._router = InboundRouter(self.topics, payload_caps, deliver,
                                     lambda ack: self._local.append(CentreAck(ack)))
        self._filters = list(self._router.kinds)
        if isinstance(self.drain.acknowledger, CentreAcknowledger):
            self._filters.append(self.topics.events_ack)
        self._mailbox: Mailbox[Item] = Mailbox()  # from other threads
        self._local: list[Item] = []  # from the link's callbacks, run inside pump()
        self._held: deque[Outgoing] = deque(maxlen=MAX_QUEUED_OUTGOING)
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._generation = 0
        self._thread: threading.Thread | None = None
        self.connects = 0  # connections that got their SUBACK (for status and tests)

    # ---- public API (any thread)

    @property
    def connected(self) -> bool:
        """True only from the SUBACK after an accepted CONNACK to the loss of that link."""
        return self._connected.is_set()

    @property
    def oversize(self) -> int:
        """Inbound payloads refused by size so far (for status and tests)."""
        return self._router.oversize

    @property
    def alive(self) -> bool:
        """The worker thread runs (the daemon's supervisor restarts it with ``start``)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the worker; also restarts one that died (it should never)."""
        if self.alive:
            raise RuntimeError("SyncService already started")
        self._stopping.clear()
        self._mailbox.reopen()
        self._thread = threading.Thread(target=self._run, name="sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say goodbye (retained offline status), disconnect, join the worker."""
        self._stopping.set()
        self._mailbox.put(Wake())
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("sync worker did not stop within %.1f s", timeout)
                return
            self._thread = None
        self._mailbox.close()

    def notify(self) -> None:
        """New events were appended: upload now rather than at the next poll."""
        self._mailbox.put(Wake())

    def publish_result(self, cmd_id: str, ok: bool, reason: str, detail: str = "") -> None:
        """Report a command's outcome on ``.../cmd/result`` (best effort, QoS 1).

        Held in memory while offline (bounded); the durable record of a command is the
        entry log row the controller writes.
        """
        body = {
            "id": cmd_id, "ok": ok, "reason": reason, "detail": detail,
            "site": self.site, "gate": self.gate, "ts": format_instant(self._clock.now()),
        }
        self._send(self.topics.cmd_result, body)

    def request_resync(self, reason: str, have_version: int | None = None) -> None:
        """Ask the centre for a full revocation list on ``.../resync``.

        The centre answers by re-publishing the retained full list; the gate also gets
        that list on every reconnect, so a lost request only delays recovery.
        """
        body = {
            "reason": reason, "have_version": have_version,
            "site": self.site, "gate": self.gate, "ts": format_instant(self._clock.now()),
        }
        self._send(self.topics.resync, body)

    def request_time(self, request: dict[str, Any]) -> None:
        """Ask the centre for signed time on ``.../time/request`` (``{"nonce", "ts",
        "clock"}``); the answer comes on ``.../time`` with that nonce."""
        self._send(self.topics.time_request, request)

    def publish_status_now(self) -> None:
        self._mailbox.put(Outgoing(self.topics.status, b"", retain=True))

    # ---- worker

    def _send(self, topic: str, body: dict[str, Any]) -> None:
        payload = json.dumps(body, separators=(",", ":"), default=str).encode("utf-8")
        self._mailbox.put(Outgoing(topic, payload))

    def _signal(self, item: LinkSignal) -> None:
        # Inside pump() on the worker: kept in arrival order for the loop to handle after
        # the read, so a "lost" comes after the PUBACKs read before it.
        self._local.append(item)

    def _run(self) -> None:
        while not self._stopping.is_set():
            link = self._connect()
            if link is None:
                break
            try:
                self._serve(link)
            except LinkError as exc:
                log.warning("MQTT connection lost: %s", exc)
            except Exception:  # a bug must not end uploads for good
                log.exception("sync worker error; reconnecting")
            finally:
                self._connected.clear()
                link.close()
                self._flush_confirmed()
            if not self._stopping.is_set():
                self._wait(self._backoff.next_delay())

    def _flush_confirmed(self) -> None:
        """Delete the rows PUBACKed before the link ended (else they are only resent)."""
        try:
            self.drain.flush()
        except Exception:
            log.exception("marking PUBACKed events sent failed; they will be sent again")

    def _connect(self) -> Link | None:
        """Connect until an accepted CONNACK or stop; None when stopping."""
        while not self._stopping.is_set():
            self._generation += 1
            self._local.clear()  # what a closed link said last is stale
            link: Link | None = None
            try:
                link = Link(
                    self.settings,
                    client_id(self.site, self.gate),
                    self._signal,
                    generation=self._generation,
                    on_message=self._router.route,
                    will=Will(self.topics.status,
                              will_payload(self.site, self.gate, self._clock.now())),
                    inflight=self.drain.window,
                    max_packet_bytes=self._router.max_packet,
                    threaded=False,  # this thread runs the network loop (pump)
                )
                link.open()
                accepted, reason = self._await_connack(link)
            except (LinkError, OSError, ValueError) as exc:  # TLS files, bad host, ...
                accepted, reason = False, str(exc)
            if accepted and link is not None:
                self._backoff.reset()
                return link
            if link is not None:
                link.close()
            if not self._stopping.is_set():
                delay = self._backoff.next_delay()
                log.warning("MQTT not connected (%s); retrying in %.1f s", reason, delay)
                self._wait(delay)
        return None

    def _await(self, link: Link, kind: str, mid: int = 0) -> LinkSignal | None:
        """Turn the loop until this link's ``kind`` signal for ``mid`` or its ``lost``;
        None on timeout or stop. Outgoing items wait in ``_held``; anything else read
        meanwhile (a centre ack) is left for the drain's loop."""
        deadline = time.monotonic() + CONNACK_TIMEOUT_S
        later: list[Item] = []
        try:
            while not self._stopping.is_set() and (left := deadline - time.monotonic()) > 0:
                items = self._turn(link, min(left, self._poll_s))
                for n, item in enumerate(items):
                    if isinstance(item, Outgoing):
                        self._held.append(item)
                    elif isinstance(item, LinkSignal):
                        if item.generation == link.generation and (
                                item.kind == "lost" or (item.kind == kind and item.mid == mid)):
                            later += items[n + 1:]
                            return item
                    elif not isinstance(item, Wake):
                        later.append(item)
            return None
        finally:
            self._local[:0] = later

    def _await_connack(self, link: Link) -> tuple[bool, str]:
        signal = self._await(link, "connack")
        if signal is None:
            return False, "stopping" if self._stopping.is_set() else "no CONNACK from the broker"
        if signal.kind == "lost":
            return False, closed_before_connack(signal, self.settings)
        return signal.ok, refused(signal)  # a refused CONNACK is NOT connected (ACL, ...)

    def _subscribe(self, link: Link) -> bool:
        """Subscribe and wait for the SUBACK; False when stopping. Until the SUBACK the
        broker may route a command for this gate to nobody (a clean session keeps no
        queue), so only then is the gate connected and the controller told."""
        signal = self._await(link, "suback", link.subscribe(self._filters))
        if self._stopping.is_set():
            return False
        if signal is None:
            raise LinkError(f"no SUBACK from the broker within {CONNACK_TIMEOUT_S:g} s")
        if signal.kind == "lost":
            raise LinkError("the broker closed the connection before its SUBACK")
        if not signal.ok:  # uploads still work; the broker's ACL needs fixing
            log.warning("the broker refused some of this gate's subscriptions (%s): check "
                        "its ACL for %s", signal.reason, ", ".join(self._filters))
        return True

    def _serve(self, link: Link) -> None:
        if not self._subscribe(link):
            return
        self.connects += 1
        self._connected.set()
        log.info("MQTT connected to %s", self.settings.url)
        self.drain.restart()
        self._publish_status(link, online=True)
        self._deliver(Inbound("connected", b"", False))
        while self._held:
            self._publish_outgoing(link, self._held.popleft())
        next_status = time.monotonic() + self._status_interval_s
        while not self._stopping.is_set():
            self.drain.fill(link.publish)
            timeout = max(0.0, min(self._poll_s, next_status - time.monotonic()))
            mids: list[int] = []
            lost = False
            items = self._turn(link, timeout)
            for item in items:
                if isinstance(item, Outgoing):
                    self._publish_outgoing(link, item)
                elif isinstance(item, CentreAck):
                    self.drain.on_centre_ack(item.payload)
                elif isinstance(item, LinkSignal) and item.generation == link.generation:
                    if item.kind == "puback":
                        mids.append(item.mid)
                    elif item.kind == "lost":
                        lost = True
            if mids:
                self.drain.on_pubacks(mids)
            elif not items:  # a quiet poll: delete what the last partial batch holds
                self.drain.flush()
            if lost:
                raise LinkError("the broker closed the connection")
            if self.drain.acknowledger.overdue(time.monotonic()):
                log.warning("the centre did not acknowledge events in time; resending")
                self.drain.restart()
            if time.monotonic() >= next_status:
                self._publish_status(link, online=True)
                next_status = time.monotonic() + self._status_interval_s
        self._goodbye(link)

    def _turn(self, link: Link, timeout: float) -> list[Item]:
        """One turn of the network loop (up to ``timeout``, less if work is waiting):
        what the link's callbacks produced, in order, then what other threads sent."""
        gone = False
        try:
            woke = link.pump(0.0 if self._local else timeout, self._mailbox.wake_socket)
        except LinkError:  # paho has said "lost" already; make sure of it
            woke = gone = True
        items, self._local = self._local, []
        if gone and not any(isinstance(i, LinkSignal) and i.kind == "lost" for i in items):
            items.append(LinkSignal("lost", link.generation, reason="connection closed"))
        if woke:
            items += self._mailbox.take()
        return items

    def _publish_outgoing(self, link: Link, item: Outgoing) -> None:
        if item.topic == self.topics.status and not item.payload:
            self._publish_status(link, online=True)
        else:
            link.publish(item.topic, item.payload, retain=item.retain)

    def _publish_status(self, link: Link, *, online: bool, reason: str | None = None) -> int:
        payload = status_payload(
            self.site, self.gate, online=online, now=self._clock.now(),
            snapshot=self._status, reason=reason,
        )
        return link.publish(self.topics.status, payload, retain=True)

    def _goodbye(self, link: Link) -> None:
        """Clean stop: a retained offline status (the will only fires on a lost link)."""
        try:
            mid = self._publish_status(link, online=False, reason="stopped")
        except LinkError:
            return
        deadline = time.monotonic() + GOODBYE_TIMEOUT_S
        while (remaining := deadline - time.monotonic()) > 0:
            mids: list[int] = []
            done = False
            for item in self._turn(link, remaining):
                if isinstance(item, LinkSignal) and item.generation == link.generation:
                    if item.kind == "lost" or (item.kind == "puback" and item.mid == mid):
                        done = True
                    elif item.kind == "puback":
                        mids.append(item.mid)
            self.drain.on_pubacks(mids)  # the rest of the batch: _run's flush deletes them
            if done:
                return

    def _wait(self, seconds: float) -> None:
        """Sleep that a stop interrupts; other items stay for later (outgoing are held)."""
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for item in self._mailbox.wait(remaining):
                if isinstance(item, Outgoing):
                    self._held.append(item)
