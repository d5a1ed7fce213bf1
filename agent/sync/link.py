"""One MQTT connection: a fresh paho client that never reconnects by itself.

Why not paho's own reconnect: paho keeps QoS 1 messages in memory and re-sends them
after a reconnect, even ones whose ``publish()`` returned NO_CONN, so an owner that
re-sends from its durable outbox would send them twice over. Here each connection is
its own client; when it is lost the client and its memory are dropped, and the owner
(``SyncService``) reconnects with backoff and jitter and starts again from the outbox.

A link given ``max_packet_bytes`` speaks MQTT 5 and states that limit in its CONNECT
(Maximum Packet Size): the broker then never forwards a bigger packet to it (Mosquitto
drops it for this client and keeps the connection), so an oversized payload costs the
gate nothing, where paho would have read it whole into memory first. Without it (the
centre's tools) the link speaks MQTT 3.1.1 as before.

Callbacks only hand off: each paho callback turns into one ``LinkSignal`` given to the
owner's ``signal`` callable. ``on_publish`` runs under paho's internal lock, so nothing
here takes a lock of ours or touches storage.

Two ways to run the network loop. ``threaded=True`` (gatectl's short sessions):
``open()`` starts paho's own network thread and the callbacks run there (``signal`` is
a queue put). ``threaded=False`` (the gate's ``SyncService``): no second thread; the
owner calls :meth:`Link.pump` on its own thread, which waits on the socket (and on the
owner's wake-up socket), reads, writes, and sends keepalive pings, and the callbacks
run inside it. Why: two threads passing every PUBACK across made the drain trade the
GIL back and forth and run at half raw paho's rate (docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.core.errors import GateError
from agent.sync.broker import BrokerSettings

log = logging.getLogger(__name__)


class LinkError(GateError, ConnectionError):
    """The broker cannot be reached, refused us, or the connection is gone."""


@dataclass(frozen=True)
class LinkSignal:
    """What the network thread tells the owner; ``generation`` names the connection."""

    kind: Literal["connack", "suback", "puback", "lost"]
    generation: int
    mid: int = 0
    ok: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True


MessageHandler = Callable[[str, bytes, bool], None]


def refused(signal: LinkSignal) -> str:
    """Why a CONNACK that refused us is not a connection (credentials, ACL, ...)."""
    return f"broker refused the connection: {signal.reason}"


def closed_before_connack(signal: LinkSignal, settings: BrokerSettings) -> str:
    """A ``lost`` before any CONNACK, with the likely cause on a TLS broker."""
    hint = ""
    if settings.tls:
        hint = (" (a TLS broker closes the connection like this when it refuses the gate's "
                "client certificate: check that mqtt.cert_file and key_file are this gate's "
                "and were issued by the CA the broker trusts for clients)")
    return f"connection closed before CONNACK: {signal.reason}{hint}"


@dataclass(frozen=True)
class Handshake:
    """How one CONNECT went: accepted, or why not (with what to check)."""

    accepted: bool
    reason: str = ""


def handshake(settings: BrokerSettings, client_id: str, timeout_s: float, *,
              max_packet_bytes: int | None = None) -> Handshake:
    """One CONNECT through a :class:`Link`, its CONNACK awaited, then a clean disconnect.

    ``gate-agent check`` asks the broker this way so it meets the same protocol (MQTT 5
    with the gate's ``max_packet_bytes``), TLS context, socket options and refusal hints
    as the daemon's connection.
    """
    signals: queue.SimpleQueue[LinkSignal] = queue.SimpleQueue()
    link = Link(settings, client_id, signals.put, connect_timeout_s=timeout_s,
                max_packet_bytes=max_packet_bytes)
    try:
        try:
            link.open()
        except LinkError as exc:
            return Handshake(False, str(exc))
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                signal = signals.get(timeout=remaining)
            except queue.Empty:
                break
            if signal.kind == "connack":
                return Handshake(True) if signal.ok else Handshake(False, refused(signal))
            if signal.kind == "lost":
                return Handshake(False, closed_before_connack(signal, settings))
        return Handshake(False, f"no CONNACK within {timeout_s:g} s")
    finally:
        link.close()


class Link:
    """A single MQTT connection (3.1.1, or 5 with a Maximum Packet Size) with TCP_NODELAY
    and a bounded in-flight window."""

    def __init__(
        self,
        settings: BrokerSettings,
        client_id: str,
        signal: Callable[[LinkSignal], None],
        *,
        generation: int = 0,
        on_message: MessageHandler | None = None,
        will: Will | None = None,
        inflight: int = 100,
        connect_timeout_s: float = 5.0,
        max_packet_bytes: int | None = None,
        threaded: bool = True,
    ) -> None:
        self.settings = settings
        self.threaded = threaded
        self.generation = generation
        self._signal = signal
        self._on_message = on_message
        self._connect_properties: Properties | None = None
        if max_packet_bytes is None:
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                 clean_session=True, protocol=paho.MQTTv311,
                                 reconnect_on_failure=False)
        else:
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                 protocol=paho.MQTTv5, reconnect_on_failure=False)
            self._connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            self._connect_properties.MaximumPacketSize = max_packet_bytes
        client.connect_timeout = connect_timeout_s
        client.max_inflight_messages_set(max(1, inflight))
        client.max_queued_messages_set(0)
        if settings.username:
            client.username_pw_set(settings.username, settings.password)
        context = settings.ssl_context()
        if context is not None:
            client.tls_set_context(context)
        if will is not None:
            client.will_set(will.topic, will.payload, qos=1, retain=will.retain)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_publish = self._handle_publish
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        # paho reports why a read failed (TLS error, reset) only in its log: keep the last.
        # A logger at ERROR, not on_log: paho formats every line for on_log (two per
        # event sent), and a level check is all a logger costs for the lines it drops.
        self._last_error = ""
        client.enable_logger(_LastError(self))
        self._client = client
        self._started = False

    def open(self) -> None:
        """Open TCP (and TLS), send CONNECT and (``threaded``) start the network thread.

        Returns before the CONNACK: the owner waits for the ``connack`` signal (pumping,
        when not ``threaded``), and only an accepted CONNACK means connected.
        """
        try:
            if self._connect_properties is None:
                self._client.connect(self.settings.host, self.settings.port,
                                     keepalive=self.settings.keepalive_s)
            else:  # MQTT 5: a clean start, and the largest packet this gate takes
                self._client.connect(self.settings.host, self.settings.port,
                                     keepalive=self.settings.keepalive_s, clean_start=True,
                                     properties=self._connect_properties)
        except (OSError, ValueError) as exc:
            raise LinkError(
                f"cannot connect to {self.settings.url}: {exc} "
                "(check the broker URL, that the broker runs, and the TLS files)"
            ) from None
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            # Without it, Nagle + delayed ACK hold small publishes back ~40 ms per round trip.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.threaded:
            self._client.loop_start()
            self._started = True

    def pump(self, timeout: float, wake: socket.socket | None = None) -> bool:
        """One turn of the network loop on the caller's thread (``threaded=False`` only).

        Waits up to ``timeout`` for the broker's bytes (or for ``wake`` to become
        readable: another thread has work for the owner), reads every whole packet that
        came (callbacks run here), writes what is queued, and sends a keepalive ping when
        one is due. Returns True when ``wake`` is readable; LinkError once the
        connection is gone (after the ``lost`` signal).
        """
        client = self._client
        sock = client.socket()
        if sock is None:
            raise LinkError("the connection is closed")
        # TLS may hold decrypted bytes the socket no longer shows as readable.
        pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
        readers = [sock] if wake is None else [sock, wake]
        writers = [sock] if client.want_write() else []
        try:
            readable, writable, _ = select.select(readers, writers, [], 0 if pending else timeout)
        except (OSError, ValueError):  # closed under us
            readable, writable = [sock], []
        if pending or sock in readable:
            client.loop_read()
        if sock in writable and client.socket() is not None:
            client.loop_write()
        if client.socket() is not None:
            client.loop_misc()  # keepalive: PINGREQ when due, close on a missed PINGRESP
        if client.socket() is None:
            raise LinkError("the broker closed the connection")
        return wake is not None and wake in readable

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Queue one message; return its mid. LinkError when the connection is gone."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise LinkError(f"publish on {topic} failed: {paho.error_string(info.rc)}")
        return info.mid

    def subscribe(self, filters: list[str], qos: int = 1) -> int:
        """Send one SUBSCRIBE; return its mid (the ``suback`` signal carries it), 0 for none."""
        if not filters:
            return 0
        rc, mid = self._client.subscribe([(f, qos) for f in filters])
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise LinkError(f"subscribe failed: {paho.error_string(rc)}")
        return mid

    def close(self) -> None:
        """Disconnect cleanly if still connected (no last will) and stop the thread."""
        with contextlib.suppress(OSError, ValueError):  # already gone
            self._client.disconnect()
        if self._started:
            self._client.loop_stop()
            self._started = False
        sock = self._client.socket()
        if not self.threaded and sock is not None:
            # DISCONNECT could not be written at once (full buffer): the client is dropped
            # now, so close its socket rather than leave it to the garbage collector.
            with contextlib.suppress(OSError):
                sock.close()

    # paho callbacks (paho's network thread, or inside pump()): hand off only.

    def _handle_connect(
        self, _c: paho.Client, _u: Any, _flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        self._signal(
            LinkSignal("connack", self.generation, ok=not reason.is_failure, reason=str(reason))
        )

    def note_error(self, message: str) -> None:
        self._last_error = message  # read by _handle_disconnect, same thread

    def _handle_disconnect(
        self, _c: paho.Client, _u: Any, _flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        why = f"{reason}; {self._last_error}" if self._last_error else str(reason)
        self._signal(LinkSignal("lost", self.generation, reason=why))

    def _handle_publish(
        self, _c: paho.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any
    ) -> None:
        self._signal(LinkSignal("puback", self.generation, mid=mid, ok=not reason.is_failure))

    def _handle_subscribe(
        self, _c: paho.Client, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        denied = [str(r) for r in reasons if r.is_failure]  # per filter, e.g. the ACL's
        self._signal(LinkSignal("suback", self.generation, mid=mid, ok=not denied,
                                reason="; ".join(denied)))

    def _handle_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        if self._on_message is not None:
            # paho hands over bytes already: no copy here (the owner checks the size first).
            payload = message.payload
            if not isinstance(payload, bytes):
                payload = bytes(payload)
            self._on_message(message.topic, payload, bool(message.retain))


class _LastError(logging.Logger):
    """paho's logger for one link: keeps its last error line for the "lost" reason.

    Not registered with ``logging`` (no global state), not propagated to the journal.
    """

    def __init__(self, link: Link) -> None:
        super().__init__(f"paho-link-{link.generation}", logging.ERROR)
        self.propagate = False
        self._link = link

    def handle(self, record: logging.LogRecord) -> None:
        self._link.note_error(record.getMessage())
