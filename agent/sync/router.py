"""Inbound MQTT payloads by topic, size-checked before anything is queued or copied.

Runs inside ``Link.pump`` on the sync worker's thread. A centre message goes to
``deliver`` as an ``Inbound`` (the controller's admission checks its signature); the
centre's ``events/ack`` goes to ``on_ack`` (the worker owns the outbox). Imported by
``agent.sync.service`` only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from agent.core.bounds import MAX_ACK_BYTES, MQTT_HEADER_ROOM
from agent.core.events import Inbound
from agent.sync.topics import GateTopics

log = logging.getLogger(__name__)

DEFAULT_CAP_BYTES = 64 * 1024  # a kind the caller gave no cap for


class InboundRouter:
    """Which topic is which ``Inbound.kind``, and the largest payload each may have."""

    def __init__(self, topics: GateTopics, caps: Mapping[str, int] | None,
                 deliver: Callable[[Inbound], None], on_ack: Callable[[bytes], None]) -> None:
        self._ack_topic = topics.events_ack
        self.kinds = topics.inbound_kinds()
        self._caps = dict(caps or {})
        self._deliver = deliver
        self._on_ack = on_ack
        self.oversize = 0  # inbound payloads refused by size
        # With caps, the largest is also stated to the broker (MQTT 5 Maximum Packet Size).
        self.max_packet = (max([MAX_ACK_BYTES, DEFAULT_CAP_BYTES, *self._caps.values()])
                           + MQTT_HEADER_ROOM if caps else None)

    def route(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic == self._ack_topic:
            if self._fits(topic, payload, MAX_ACK_BYTES):
                self._on_ack(payload)
            return
        kind = self.kinds.get(topic)
        if kind is None:
            log.warning("ignored message on unexpected topic %s", topic)
            return
        if self._fits(topic, payload, self._caps.get(kind, DEFAULT_CAP_BYTES)):
            self._deliver(Inbound(kind, payload, retained))

    def _fits(self, topic: str, payload: bytes, cap: int) -> bool:
        if len(payload) <= cap:
            return True
        self.oversize += 1
        if self.oversize in (1, 10, 100) or not self.oversize % 1000:
            log.warning("refused %d-byte message on %s (at most %d): %d so far",
                        len(payload), topic, cap, self.oversize)
        return False
