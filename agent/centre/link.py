"""The centre's MQTT 5 connection: shared subscriptions and manual PUBACKs, reconnecting.

Each connection is a fresh paho client (clean start, ``manual_ack=True``) so nothing of
an old session leaks into a new one; a supervisor thread reconnects with backoff and
jitter (``agent.core.backoff``). Messages are handed to ``on_message`` with the
connection's generation and mid; ``ack`` sends the PUBACK only if that connection is
still the current one, because a mid means nothing on another connection (and could
acknowledge a different message there). The broker keeps an unacknowledged message
in flight for us; if we die first, the gate's ``ack_timeout_s`` resend recovers it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt import __version__ as _PAHO_VERSION
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.core.backoff import Backoff
from agent.sync.broker import BrokerSettings

log = logging.getLogger(__name__)

CONNACK_TIMEOUT_S = 10.0
RECEIVE_MAXIMUM = 10_000  # unacknowledged messages the broker may send us (batches wait)
# Our own QoS 1 publishes (acks, commands) not yet PUBACKed by the broker, at most: paho's
# mids are 16 bits and a publish whose mid is still in use fails, so ``publish`` waits
# (which holds the writer, hence the PUBACKs of what we receive) instead of going over.
MAX_UNACKED_PUBLISHES = 20_000
_PUBACK = struct.Struct("!BBH")
# The batched PUBACK writes into paho's private packet queue: only on the paho releases
# it was tested with (tests/test_centre_ingest.py); any other release acks one by one.
_BATCHED_PUBACK_PAHO = ("2.1.", "2.2.")
_BATCHED_PUBACK = _PAHO_VERSION.startswith(_BATCHED_PUBACK_PAHO)
PUBLISH_WAIT_S = 10.0


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retained: bool
    qos: int
    mid: int
    generation: int
    received_at: float  # the centre's clock when paho handed it over


class CentreLink:
    """One supervised MQTT 5 connection; ``publish``/``ack`` are safe from any thread."""

    def __init__(self, settings: BrokerSettings, client_id: str, filters: list[str],
                 on_message: Callable[[Message], None], *,
                 on_connect: Callable[[], None] | None = None,
                 reconnect_max_s: float = 30.0) -> None:
        self.settings = settings
        self.client_id = client_id
        self.filters = filters
        self._on_message = on_message
        self._on_connect = on_connect
        self._backoff = Backoff(0.5, max(0.5, reconnect_max_s))
        self._lock = threading.Lock()
        self._client: paho.Client | None = None
        self._generation = 0
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connects = 0
        self.last_error = ""
        self.publish_failures = 0
        # QoS 1 publishes on the current connection (under _lock) and paho's reports of
        # their PUBACKs (its thread only).
        self._published = 0
        self._reported = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="centre-mqtt", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("centre MQTT thread did not stop within %.1f s", timeout)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """A QoS 1 publish on the current connection; False when there is none or it
        could not be queued (logged: a gate then resends after its ``ack_timeout_s``)."""
        deadline = time.monotonic() + PUBLISH_WAIT_S
        while self._published - self._reported >= MAX_UNACKED_PUBLISHES \
                and self._connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.002)  # the broker is behind on PUBACKs: hold back
        with self._lock:
            client = self._client if self._connected.is_set() else None
            if client is None:
                return False
            self._published += 1  # before: paho may report it before publish() returns
            info = client.publish(topic, payload, qos=1, retain=retain)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                return True
            self._published -= 1
        self.publish_failures += 1
        log.warning("publish on %s failed: %s", topic, paho.error_string(info.rc))
        return False

    def ack_many(self, generation: int, mids: Sequence[int]) -> bool:
        """PUBACK QoS 1 messages of one connection in one socket write.

        paho's ``ack`` queues one 4-byte packet, wakes its loop and sends it with its own
        syscalls: per message, at thousands a second, that is more than storing it. Here
        the same packets (MQTT 5 allows the 4-byte PUBACK for success) go to paho's
        writer as one buffer, which keeps its own ordering and partial writes; without
        that paho internal (or on a paho release it was not tested with), one ``ack`` each.
        """
        if not mids:
            return True
        with self._lock:
            client = self._client
            if generation != self._generation or client is None \
                    or not self._connected.is_set():
                return False
            queue = getattr(client, "_packet_queue", None) if _BATCHED_PUBACK else None
            if queue is not None:
                packets = b"".join(_PUBACK.pack(0x40, 2, mid) for mid in mids)
                try:
                    return bool(queue(0x40, packets, 0, 0) == MQTTErrorCode.MQTT_ERR_SUCCESS)
                except TypeError:  # another paho's signature: nothing was queued
                    pass
            return all(client.ack(mid, 1) == MQTTErrorCode.MQTT_ERR_SUCCESS for mid in mids)

    def ack(self, generation: int, mid: int, qos: int) -> bool:
        """PUBACK one message, only on the connection it came from."""
        if qos == 0:
            return True
        with self._lock:
            if generation != self._generation or self._client is None \
                    or not self._connected.is_set():
                return False
            return self._client.ack(mid, qos) == MQTTErrorCode.MQTT_ERR_SUCCESS

    # ---- supervisor

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._session()
            except Exception as exc:  # a bug must not end ingest for good
                log.exception("centre MQTT session failed: %s", exc)
            if not self._stop.is_set():
                delay = self._backoff.next_delay()
                log.warning("MQTT %s not connected (%s); retrying in %.1f s",
                            self.settings.url, self.last_error or "connection lost", delay)
                self._stop.wait(delay)

    def _session(self) -> None:
        connack = threading.Event()
        lost = threading.Event()
        outcome: dict[str, Any] = {}
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._published = self._reported = 0
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=paho.MQTTv5, manual_ack=True,
                             reconnect_on_failure=False)
        # No in-flight cap in paho: with one, every PUBACK walks all our unacknowledged
        # publishes (paho's _update_inflight): a quarter of paho's thread at ~6,000
        # events/s. MAX_UNACKED_PUBLISHES bounds them instead (docs/decisions.md).
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        if self.settings.username:
            client.username_pw_set(self.settings.username, self.settings.password)
        context = self.settings.ssl_context()
        if context is not None:
            client.tls_set_context(context)

        def on_connect(_c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
            outcome["ok"], outcome["reason"] = not reason.is_failure, str(reason)
            connack.set()

        def on_disconnect(_c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
            self._connected.clear()
            outcome.setdefault("reason", str(reason))
            self.last_error = f"disconnected: {reason}"
            lost.set()
            connack.set()

        def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
            self._on_message(Message(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos,
                                     msg.mid, generation, time.time()))

        def on_publish(_c: Any, _u: Any, _mid: int, _r: Any, _p: Any) -> None:
            self._reported += 1

        suback = threading.Event()
        client.on_connect = on_connect
        client.on_publish = on_publish
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        client.on_subscribe = lambda *_a: suback.set()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        try:
            client.connect(self.settings.host, self.settings.port,
                           keepalive=self.settings.keepalive_s, clean_start=True,
                           properties=props)
        except (OSError, ValueError) as exc:
            self.last_error = f"cannot connect: {exc}"
            return
        sock = client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._client = client
        client.loop_start()
        try:
            if not connack.wait(CONNACK_TIMEOUT_S) or not outcome.get("ok"):
                self.last_error = f"broker refused or did not answer: {outcome.get('reason')}"
                return
            # Connected means subscribed too: until the SUBACK the broker routes the
            # gates' events to nobody (a test that publishes once would wait forever).
            rc, _ = client.subscribe([(f, SubscribeOptions(qos=1)) for f in self.filters])
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.last_error = f"subscribe failed: {paho.error_string(rc)}"
                return
            if not suback.wait(CONNACK_TIMEOUT_S):
                self.last_error = "the broker did not answer the subscription"
                return
            self._connected.set()
            self._backoff.reset()
            self.connects += 1
            self.last_error = ""
            log.info("MQTT connected to %s (connection %d)", self.settings.url, generation)
            if self._on_connect is not None:
                self._on_connect()
            while not self._stop.is_set() and not lost.wait(0.5):
                pass
        finally:
            self._connected.clear()
            with self._lock:
                self._client = None
            with contextlib.suppress(Exception):
                client.disconnect()
            client.loop_stop()
