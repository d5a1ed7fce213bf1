"""A short-lived synchronous broker session for one staff command, and the wait for
the gates' answers to a signed command. Used by gatectl (and by the centre service)."""

from __future__ import annotations

import json
import queue
import time
from typing import Any

from agent.sync.broker import BrokerSettings
from agent.sync.link import Link, LinkError, LinkSignal

CONNECT_TIMEOUT_S = 10.0


class CtlSession:
    """A short-lived synchronous connection for one gatectl command."""

    def __init__(self, settings: BrokerSettings, client_prefix: str = "gatectl") -> None:
        self.signals: queue.SimpleQueue[LinkSignal] = queue.SimpleQueue()
        self.messages: queue.SimpleQueue[tuple[str, bytes, bool]] = queue.SimpleQueue()
        client_id = f"{client_prefix}-{time.time_ns() % 10**12:x}"
        self.link = Link(settings, client_id, self.signals.put,
                         on_message=lambda t, p, r: self.messages.put((t, p, r)))

    def __enter__(self) -> CtlSession:
        self.link.open()
        try:
            signal = self._next_signal(CONNECT_TIMEOUT_S, "CONNACK")
            if signal.kind != "connack" or not signal.ok:
                raise LinkError(f"broker {self.link.settings.url} refused the connection: "
                                f"{signal.reason} (check credentials and ACL)")
        except BaseException:  # no CONNACK in time, refused, Ctrl-C: stop paho's thread
            self.link.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.link.close()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Publish QoS 1 and return after the broker's PUBACK."""
        mid = self.link.publish(topic, payload, retain=retain)
        deadline = time.monotonic() + timeout
        while True:
            signal = self._next_signal(deadline - time.monotonic(), "PUBACK")
            if signal.kind == "lost":
                raise LinkError(f"connection lost before the broker acknowledged {topic}")
            if signal.kind == "puback" and signal.mid == mid:
                return

    def _next_signal(self, timeout: float, what: str) -> LinkSignal:
        try:
            return self.signals.get(timeout=max(0.0, timeout))
        except queue.Empty:
            raise LinkError(f"no {what} from {self.link.settings.url} within the timeout") from None


def await_results(
    session: CtlSession, cmd_id: str, wait_s: float, *, first_only: bool
) -> list[dict[str, Any]]:
    """The gates' results for ``cmd_id`` (one per gate) that arrive within ``wait_s``."""
    deadline = time.monotonic() + wait_s
    results: dict[str, dict[str, Any]] = {}
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            topic, payload, _retained = session.messages.get(timeout=remaining)
        except queue.Empty:
            break
        try:
            body = json.loads(payload)
        except ValueError:
            continue
        if isinstance(body, dict) and body.get("id") == cmd_id:
            results.setdefault(topic, body)
            if first_only:
                break
    return list(results.values())
