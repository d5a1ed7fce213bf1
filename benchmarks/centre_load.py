"""Load for bench_centre.py: simulated gates that can offer far more than gate-centre takes.

A Python paho publisher tops out near 2,000-4,000 messages/s on this machine, the same
order as the centre it is meant to measure, so the benchmark would time the load
generator. Here each publisher process pre-encodes real MQTT 3.1.1 QoS 1 PUBLISH packets
(one topic per gate, ``gate/v1/{site}/{gate}/events``, the gate's real event JSON with
id and seq) before the start signal and writes them to a plain socket, reading the
broker's PUBACKs on a thread (a window bounds what is unacknowledged). Three modes:

- ``burst``: everything as fast as the socket takes it;
- ``paced``: ``rate`` events/s round-robin over the gates until a stop file appears;
- ``window``: one gate with a backlog, at most ``window`` events not yet acknowledged by
  the centre's ``events/ack`` (what SyncService does with ``ack = "centre"`` and
  ``[mqtt] inflight``), so the centre's ack round trip sets its pace as it does a gate's.

``AckCollector`` reads every ``events/ack`` the centre publishes, also on a plain socket,
so thousands of acks a second are counted without a paho loop in the way. None of this is
gate code: the gates' own sync path is measured by bench_sync.py.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

TS = "2026-12-01T10:00:00.000Z"


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(value: str) -> bytes:
    raw = value.encode()
    return struct.pack("!H", len(raw)) + raw


def publish_packet(topic: str, payload: bytes, pid: int) -> bytes:
    """One QoS 1 PUBLISH (MQTT 3.1.1)."""
    body = _text(topic) + struct.pack("!H", pid) + payload
    return b"\x32" + _length(len(body)) + body


def event_body(site: str, gate: str, seq: int, n: int) -> bytes:
    """A gate's event record as the gate publishes it (architecture.md, "Event record")."""
    return json.dumps({"id": uuid.uuid4().hex, "seq": seq, "ts": TS, "site": site,
                       "gate": gate, "kind": "scan", "granted": True, "reason": "ok",
                       "sub": f"courier-{n % 6000:06d}", "cti": "9f" * 8, "method": "camera",
                       "door": "unlocked"}, separators=(",", ":")).encode()


class RawClient:
    """A minimal MQTT 3.1.1 client on a blocking socket: connect, publish pre-encoded
    packets, subscribe QoS 0; a reader thread counts PUBACKs and hands PUBLISHes over."""

    def __init__(self, port: int, client_id: str,
                 on_publish: Callable[[str, bytes], None] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pubacks = 0
        self.suback = threading.Event()
        self._on_publish = on_publish
        self._cond = threading.Condition()
        body = _text("MQTT") + b"\x04\x02\x00\x00" + _text(client_id)  # clean, no keepalive
        self.sock.sendall(b"\x10" + _length(len(body)) + body)
        head = self._recv_exact(4)
        if head[0] != 0x20 or head[3] != 0:
            raise ConnectionError(f"broker refused the load client: CONNACK {head.hex()}")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the load client's connection")
            data += chunk
        return data

    def subscribe(self, topic: str) -> None:
        body = struct.pack("!H", 1) + _text(topic) + b"\x00"
        self.sock.sendall(b"\x82" + _length(len(body)) + body)
        if not self.suback.wait(10):
            raise TimeoutError(f"no SUBACK for {topic}")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait_pubacks(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.pubacks >= count, timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\xe0\x00")
        self.sock.close()

    def _read(self) -> None:
        buf = bytearray()
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            pos, acks = 0, 0
            while len(buf) - pos >= 2:
                kind = buf[pos]
                mult, length, i = 1, 0, pos + 1
                while i < len(buf):
                    byte = buf[i]
                    length += (byte & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not byte & 0x80:
                        break
                else:
                    break
                if len(buf) - i < length:
                    break
                packet = kind >> 4
                if packet == 4:
                    acks += 1
                elif packet == 9:
                    self.suback.set()
                elif packet == 3 and self._on_publish is not None:
                    (tlen,) = struct.unpack_from("!H", buf, i)
                    topic = bytes(buf[i + 2:i + 2 + tlen]).decode()
                    start = i + 2 + tlen + (2 if kind & 0x06 else 0)
                    self._on_publish(topic, bytes(buf[start:i + length]))
                pos = i + length
            del buf[:pos]
            if acks:
                with self._cond:
                    self.pubacks += acks
                    self._cond.notify_all()


class AckCollector:
    """Every ``events/ack`` of a site: (gate, seq) -> when it was first seen."""

    def __init__(self, port: int, site: str) -> None:
        self.acked: dict[tuple[str, int], float] = {}
        self.counts: dict[str, int] = {}  # acknowledged seqs per gate
        self.lock = threading.Lock()
        self.client = RawClient(port, f"bench-acks-{uuid.uuid4().hex[:6]}", self._on_ack)
        self.client.subscribe(f"gate/v1/{site}/+/events/ack")

    def _on_ack(self, topic: str, payload: bytes) -> None:
        now = time.time()
        gate = topic.split("/")[3]
        seqs = json.loads(payload)["seqs"]
        with self.lock:
            for seq in seqs:
                if (gate, seq) not in self.acked:
                    self.acked[(gate, seq)] = now
                    self.counts[gate] = self.counts.get(gate, 0) + 1

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Polled, not notified: a wake-up of the waiting thread per ack would compete
        with this reader for the GIL and delay the very timestamps being measured."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def wait(self, count: int, timeout: float) -> bool:
        return self.wait_until(lambda: len(self.acked) >= count, timeout)

    def close(self) -> None:
        self.client.close()


def publisher(port: int, spec_file: str) -> None:
    """Child process: encode the spec's events, say ``ready``, wait for the ``go`` file,
    send; write [gate, seq, time sent] to ``spec_file.sent`` (for ``window``, also the
    time the last ack arrived)."""
    spec = json.loads(Path(spec_file).read_text())
    folder = Path(spec_file).parent
    site, mode = spec["site"], spec["mode"]
    seqs: dict[str, int] = spec["gates"]
    gates = list(seqs)
    count = int(spec["count"])
    packets: list[tuple[str, int, bytes]] = []
    for n in range(count):
        gate = gates[n % len(gates)]
        seqs[gate] += 1
        packets.append((gate, seqs[gate], publish_packet(
            f"gate/v1/{site}/{gate}/events", event_body(site, gate, seqs[gate], n),
            n % 65535 + 1)))
    acked = [0]
    acked_cond = threading.Condition()

    def on_ack(_topic: str, payload: bytes) -> None:
        with acked_cond:
            acked[0] += len(json.loads(payload)["seqs"])
            acked_cond.notify_all()

    client = RawClient(port, f"bench-pub-{uuid.uuid4().hex[:8]}",
                       on_ack if mode == "window" else None)
    if mode == "window":
        client.subscribe(f"gate/v1/{site}/{gates[0]}/events/ack")
    print("ready", flush=True)
    while not (folder / "go").exists():
        time.sleep(0.002)
    sent: list[Any] = []
    window = int(spec.get("window") or 20_000)  # broker-unacknowledged, burst and paced
    start = time.perf_counter()
    if mode == "burst":
        for i in range(0, count, 100):
            client.wait_pubacks(i - window, 60)
            chunk = packets[i:i + 100]
            now = time.time()
            client.send(b"".join(p for _, _, p in chunk))
            sent.extend((g, s, now) for g, s, _ in chunk)
    elif mode == "paced":
        rate = float(spec["rate"])
        stop = folder / "stop"
        for n, (gate, seq, packet) in enumerate(packets):
            pause = start + n / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            if n % 50 == 0 and stop.exists():
                break
            sent.append((gate, seq, time.time()))
            client.send(packet)
    else:  # window: the centre's acks open it
        for gate, seq, packet in packets:
            with acked_cond:
                acked_cond.wait_for(lambda: len(sent) - acked[0] < window, 60)
            sent.append((gate, seq, time.time()))
            client.send(packet)
        with acked_cond:
            acked_cond.wait_for(lambda: acked[0] >= count, 300)
    client.wait_pubacks(len(sent), 60)
    client.close()
    Path(spec_file + ".sent").write_text(json.dumps({"sent": sent, "end": time.time()}))
