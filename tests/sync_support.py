"""Helpers for the sync tests: an outbox, a subscriber on the real broker, ops keys.

``make_outbox`` returns the store's real ``EntryLog`` (SQLite, durable on return).
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.protocol.keys import KeyRing, SigningKey, load_keyring, write_keypair


def make_outbox(path: Path) -> Any:
    """The store's real EntryLog (SQLite WAL, synchronous=FULL) under ``path``."""
    from agent.store.entrylog import EntryLog

    return EntryLog(path)


def backlog(outbox: Any) -> int:
    return len(outbox.pending(0, 1_000_000))


class Subscriber:
    """A plain paho client that records every message it gets (topic, payload, retain)."""

    def __init__(self, url: str, filters: list[str], client_id: str = "",
                 username: str | None = None, password: str | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        host, port = url.split("://")[-1].split(":")
        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if username:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe([(f, 1) for f in filters])
        self.client.connect(host, int(port))
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscriber did not get SUBACK"

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[tuple[str, bytes, bool]]], bool],
                 timeout: float = 20.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.messages), timeout)

    def json_on(self, suffix: str) -> list[dict[str, Any]]:
        with self._cond:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix) and p]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class OpsKeys:
    keyring: KeyRing
    key: SigningKey
    kid: str
    key_file: Path
    ops_dir: Path


def make_ops_keys(folder: Path, kid: str = "ops-1") -> OpsKeys:
    """A fresh ops key pair, trusted by a keyring built from the folders on disk."""
    from agent.protocol.keys import load_signing_key

    issuers, ops, private = folder / "issuers", folder / "ops", folder / "private"
    issuers.mkdir(parents=True, exist_ok=True)
    key_file, pub = write_keypair(private, kid)
    ops.mkdir(parents=True, exist_ok=True)
    (ops / f"{kid}.pub").write_bytes(pub.read_bytes())
    return OpsKeys(load_keyring(issuers, ops), load_signing_key(key_file), kid, key_file, ops)


class CentreStore:
    """The centre's side of end-to-end acks: what it stored, and the contiguous upto."""

    def __init__(self) -> None:
        self.seqs: set[int] = set()
        self.upto = 0

    def add(self, seq: int) -> int:
        self.seqs.add(seq)
        while self.upto + 1 in self.seqs:
            self.upto += 1
        return self.upto


class AckingCentre(Subscriber):
    """A subscriber that acknowledges stored events on ``.../events/ack`` (QoS 1)."""

    def __init__(self, url: str, events_topic: str, store: CentreStore,
                 tls: ssl.SSLContext | None = None) -> None:
        self.store = store
        self.ack_topic = events_topic + "/ack"
        super().__init__(url, [events_topic], tls=tls)

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        super()._on_message(client, userdata, msg)
        upto = self.store.add(int(json.loads(msg.payload)["seq"]))
        client.publish(self.ack_topic, json.dumps({"upto": upto}), qos=1)
