"""The broker fixture itself: starts, is reachable, stops, kills and restarts."""

from __future__ import annotations

import socket

from tests.broker import Broker


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_broker_starts_kills_and_restarts_on_the_same_port(broker: Broker) -> None:
    assert _reachable(broker.port)
    broker.kill()
    assert not _reachable(broker.port)
    broker.start()
    assert _reachable(broker.port)
    broker.restart()
    assert _reachable(broker.port)
