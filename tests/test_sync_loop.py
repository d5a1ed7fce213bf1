"""The gate's link as its sync worker runs it (paho's network loop on the worker's own
thread), against a real Mosquitto: connected only once subscribed, pings while idle, a
lost connection seen at once, and inbound messages handled while a backlog drains."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

from agent.core.events import Inbound
from agent.sync.broker import broker_settings
from agent.sync.mailbox import Mailbox
from agent.sync.service import SyncService
from tests.broker import Broker
from tests.daemon_support import wait_until
from tests.sync_support import Subscriber, backlog, make_outbox

SITE, GATE = "binhai-0001", "north-1"
CMD = f"gate/v1/{SITE}/{GATE}/cmd"


def _next(delivered: queue.SimpleQueue[Inbound], kind: str, timeout: float = 10) -> Inbound:
    deadline = time.monotonic() + timeout
    while True:
        try:
            item = delivered.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {kind!r} message reached the gate in {timeout} s") from None
        if item.kind == kind:
            return item


def test_a_command_sent_once_the_gate_is_connected_reaches_it_even_if_the_worker_lags(
    tmp_path: Path, broker: Broker
) -> None:
    """The worker is held up right after connecting (here by the status snapshot, as on a
    busy gate); a command sent as soon as the gate counts as connected must arrive: the
    subscription was live before ``connected`` (it used to be set before SUBSCRIBE)."""
    asked, released = threading.Event(), threading.Event()

    def slow_status() -> dict[str, Any]:
        if not asked.is_set():
            asked.set()
            released.wait(10)
        return {}

    delivered: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
    sync = SyncService(broker_settings(broker.url), SITE, GATE, make_outbox(tmp_path / "o"),
                       delivered.put, slow_status)
    publisher = Subscriber(broker.url, ["unused/topic"])
    sync.start()
    try:
        assert asked.wait(10), "the gate never connected"
        assert sync.connected
        publisher.publish(CMD, b"open-now")  # QoS 1, back from the broker before release
        released.set()
        assert _next(delivered, "connected").payload == b""
        assert _next(delivered, "cmd").payload == b"open-now"
    finally:
        released.set()
        publisher.close()
        sync.stop()


def test_an_idle_gate_keeps_its_connection_past_the_keepalive(
    tmp_path: Path, broker: Broker
) -> None:
    """Mosquitto drops a client that sends nothing for 1.5x its keepalive: the worker's
    loop must ping by itself while nothing else goes out."""
    delivered: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
    sync = SyncService(broker_settings(broker.url, keepalive_s=1), SITE, GATE,
                       make_outbox(tmp_path / "o"), delivered.put, lambda: {},
                       status_interval_s=3600, reconnect_min_s=0.05, reconnect_max_s=0.1)
    publisher = Subscriber(broker.url, ["unused/topic"])
    sync.start()
    try:
        _next(delivered, "connected")
        time.sleep(3.5)  # what is tested is time passing: three keepalives, nothing sent
        assert sync.connected and sync.connects == 1
        publisher.publish(CMD, b"still-here")
        assert _next(delivered, "cmd").payload == b"still-here"
    finally:
        publisher.close()
        sync.stop()


def test_a_killed_broker_is_noticed_at_once_and_the_gate_reconnects(
    tmp_path: Path, broker: Broker
) -> None:
    delivered: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
    sync = SyncService(broker_settings(broker.url, keepalive_s=30), SITE, GATE,
                       make_outbox(tmp_path / "o"), delivered.put, lambda: {},
                       reconnect_min_s=0.05, reconnect_max_s=0.2)
    sync.start()
    try:
        _next(delivered, "connected")
        broker.kill()
        # Seen from the socket, not from a missed ping 30 s later.
        assert wait_until(lambda: not sync.connected, 2.0, step=0.01), \
            "the lost connection went unseen"
        broker.start()
        _next(delivered, "connected", timeout=20)
        assert sync.connects == 2
    finally:
        sync.stop()


def test_commands_and_a_backlog_share_the_worker_loop(tmp_path: Path, broker: Broker) -> None:
    """Inbound messages and PUBACKs are read by one loop: every command arrives, in
    order, and every event is confirmed."""
    outbox = make_outbox(tmp_path / "o")
    for n in range(3000):
        outbox.append({"kind": "scan", "granted": True, "reason": "ok", "n": n})
    delivered: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
    sync = SyncService(broker_settings(broker.url), SITE, GATE, outbox, delivered.put,
                       lambda: {}, inflight=20)
    publisher = Subscriber(broker.url, ["unused/topic"])
    sync.start()
    try:
        _next(delivered, "connected")
        for n in range(20):
            publisher.publish(CMD, f"cmd-{n}".encode())
        got = [_next(delivered, "cmd").payload for _ in range(20)]
        assert got == [f"cmd-{n}".encode() for n in range(20)]
        assert wait_until(lambda: backlog(outbox) == 0, 30, step=0.01), f"{backlog(outbox)} left"
    finally:
        publisher.close()
        sync.stop()
        outbox.close()


def test_the_mailbox_wakes_a_waiting_worker_and_keeps_items_across_a_restart() -> None:
    """What other threads give the worker (command results, stop) wakes its wait at once
    and is never lost: not between two puts, not while the worker is stopped."""
    box: Mailbox[str] = Mailbox()
    got: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
    waiter = threading.Thread(target=lambda: got.put(box.wait(30)), name="test-waiter")
    waiter.start()
    box.put("result")
    assert got.get(timeout=10) == ["result"]  # long before the 30 s timeout
    waiter.join(10)
    box.put("a")
    box.put("b")  # one wake-up byte for both
    started = time.monotonic()
    assert box.wait(30) == ["a", "b"]
    assert box.wait(0) == []
    box.close()
    box.put("while stopped")
    box.reopen()
    assert box.wait(30) == ["while stopped"]
    assert time.monotonic() - started < 10  # woken both times, never waited out
    box.close()
