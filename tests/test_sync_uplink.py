"""The outbox reaches the centre: every event at least once, through broker outages."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

import pytest

from agent.core.config import MqttSection
from agent.core.events import Inbound
from agent.sync.broker import broker_settings
from agent.sync.service import SyncService
from agent.sync.uplink import CentreAcknowledger, UplinkDrain
from tests.broker import Broker
from tests.sync_support import AckingCentre, CentreStore, Subscriber, backlog, make_outbox

SITE, GATE = "binhai-0001", "north-1"
EVENTS = f"gate/v1/{SITE}/{GATE}/events"


def _event(i: int) -> dict[str, object]:
    return {"kind": "scan", "granted": i % 3 != 0, "reason": "ok", "sub": f"c{i}",
            "cti": f"{i:032x}", "method": "camera", "door": "unlocked",
            "site": SITE, "gate": GATE}


def _ids(sub: Subscriber) -> list[str]:
    return [m["id"] for m in sub.json_on("/events")]


def _service(broker: Broker, outbox: object, inbound: queue.SimpleQueue[Inbound],
             **kw: object) -> SyncService:
    settings = broker_settings(broker.url, keepalive_s=5)
    return SyncService(settings, SITE, GATE, outbox, inbound.put,  # type: ignore[arg-type]
                       lambda: {"outbox_backlog": 0}, reconnect_max_s=0.5, **kw)  # type: ignore[arg-type]


def test_backlog_drains_in_order_and_outbox_ends_empty(broker: Broker, tmp_path: Path) -> None:
    outbox = make_outbox(tmp_path)
    appended = [outbox.append(_event(i)).id for i in range(500)]
    sub = Subscriber(broker.url, [EVENTS])
    sync = _service(broker, outbox, queue.SimpleQueue(), inflight=20)
    sync.start()
    try:
        assert sub.wait_for(lambda m: len(m) >= 500)
        for i in range(500, 600):  # new events keep flowing after the backlog
            appended.append(outbox.append(_event(i)).id)
            sync.notify()
        assert sub.wait_for(lambda m: len(m) >= 600)
        got = sub.json_on("/events")
        assert [m["id"] for m in got] == appended  # one connection: sequence order
        assert [m["seq"] for m in got] == sorted(m["seq"] for m in got)
        assert got[0]["reason"] == "ok" and got[0]["door"] == "unlocked"
        assert _wait(lambda: backlog(outbox) == 0)
        assert sync.drain.confirmed == 600
    finally:
        sync.stop()
        sub.close()


@pytest.mark.slow
def test_ten_thousand_events_survive_ten_broker_kills(broker: Broker, tmp_path: Path) -> None:
    # A SIGKILLed broker loses what it PUBACKed but had not delivered yet, so the gate
    # waits for the centre's own acknowledgement ([mqtt] ack = "centre").
    outbox = make_outbox(tmp_path)
    centre = CentreStore()
    subs: list[Subscriber] = [AckingCentre(broker.url, EVENTS, centre)]
    mqtt = MqttSection(url=broker.url, keepalive_s=5, inflight=100, reconnect_max_s=0.5,
                       ack="centre", ack_timeout_s=5.0)
    sync = SyncService(mqtt, SITE, GATE, outbox, queue.SimpleQueue().put, lambda: {})
    assert isinstance(sync.drain.acknowledger, CentreAcknowledger)  # the mode under test
    appended: list[str] = []
    done = threading.Event()

    def producer() -> None:
        for i in range(10_000):
            appended.append(outbox.append(_event(i)).id)
            if i % 20 == 0:
                sync.notify()
        done.set()

    def received() -> list[str]:
        return [i for s in subs for i in _ids(s)]

    sync.start()
    writer = threading.Thread(target=producer, name="producer")
    writer.start()
    try:
        for _ in range(10):
            assert _wait(lambda: sync.connected, 30)
            before = len(received())
            # Kill with events in flight: after the subscriber saw some on this connection.
            assert _wait(lambda b=before: len(received()) > b + 50 or done.is_set(), 30)
            broker.kill()
            broker.start()
            subs[-1].close()
            subs.append(AckingCentre(broker.url, EVENTS, centre))
        writer.join(60)
        assert done.is_set()
        assert _wait(lambda: backlog(outbox) == 0, 60), f"{backlog(outbox)} left in outbox"
        assert sync.connects >= 11
        got = received()
        assert set(got) == set(appended), f"{len(set(appended) - set(got))} ids never arrived"
        # Duplicates (resent after a reconnect) carry the same id and seq as the original.
        by_id: dict[str, set[int]] = {}
        for s in subs:
            for m in s.json_on("/events"):
                by_id.setdefault(m["id"], set()).add(m["seq"])
        assert all(len(seqs) == 1 for seqs in by_id.values())
        assert sync.drain.confirmed >= 10_000
    finally:
        sync.stop()
        for s in subs:
            s.close()


def _wait(predicate, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def test_drain_restart_resends_from_oldest_unacked(tmp_path: Path) -> None:
    outbox = make_outbox(tmp_path)
    for i in range(10):
        outbox.append(_event(i))
    sent: list[tuple[int, int]] = []

    def publish(topic: str, payload: bytes) -> int:
        sent.append((len(sent) + 1, json.loads(payload)["seq"]))
        return len(sent)

    drain = UplinkDrain(outbox, EVENTS, window=4)
    assert drain.fill(publish) == 4 and drain.fill(publish) == 0  # window full
    drain.on_pubacks([2, 2, 99])  # a duplicate and an unknown mid count once / not at all
    assert drain.confirmed == 1
    drain.restart()  # connection lost: 1, 3, 4 unconfirmed, resent first
    drain.fill(publish)
    assert [seq for _, seq in sent[4:]] == [1, 3, 4, 5]


def test_drain_publishes_the_recorded_json_byte_for_byte(tmp_path: Path) -> None:
    """The centre gets each event exactly as the gate recorded it (``id`` and ``seq`` first,
    UTF-8 as written), and a resend repeats the very same bytes."""
    outbox = make_outbox(tmp_path)
    entries = [outbox.append({**_event(i), "detail": "北门 door ✓"}) for i in range(3)]
    sent: list[bytes] = []

    def publish(topic: str, payload: bytes) -> int:
        sent.append(payload)
        return len(sent)

    drain = UplinkDrain(outbox, EVENTS, window=10)
    assert drain.fill(publish) == 3
    assert [json.loads(p) for p in sent] == [e.event for e in entries]
    for payload, entry in zip(sent, entries, strict=True):
        assert payload.startswith(f'{{"id":"{entry.id}","seq":{entry.seq},'.encode())
        assert "北门 door ✓".encode() in payload
    drain.restart()  # connection lost before any PUBACK: all three go again
    assert drain.fill(publish) == 3
    assert sent[3:] == sent[:3]


def test_batched_drain_deletes_pubacked_rows_together_and_never_loses_one(
    tmp_path: Path,
) -> None:
    """Fewer SQLite writes: PUBACKed rows leave the outbox a batch at a time, the rest when
    the window empties or the connection restarts; none is deleted before its PUBACK."""
    outbox = make_outbox(tmp_path)
    for i in range(20):
        outbox.append(_event(i))
    sent: list[int] = []

    def publish(topic: str, payload: bytes) -> int:
        sent.append(json.loads(payload)["seq"])
        return len(sent)

    drain = UplinkDrain(outbox, EVENTS, window=8, batch=4, refill=2)
    assert drain.fill(publish) == 8  # seqs 1-8 as mids 1-8
    drain.on_pubacks([1])
    assert drain.fill(publish) == 0  # one free slot: wait for half a batch of room
    drain.on_pubacks([2, 3])
    assert backlog(outbox) == 20  # three PUBACKed rows wait for the batch
    assert drain.fill(publish) == 3  # seqs 9-11
    drain.on_pubacks([4])
    assert backlog(outbox) == 16  # the batch of four is deleted together
    drain.on_pubacks([5])
    drain.restart()  # connection lost: the PUBACKed row is deleted, not only resent
    assert backlog(outbox) == 15
    assert drain.fill(publish) == 8
    assert sent[-8:] == [6, 7, 8, 9, 10, 11, 12, 13]  # from the oldest not PUBACKed
    drain.on_pubacks(range(12, 18))
    assert backlog(outbox) == 9
    drain.on_pubacks([18, 19])  # the window is empty: no PUBACK is left to wait for
    assert backlog(outbox) == 7


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_centre_ack_mode_resends_one_window_not_the_backlog_while_the_centre_is_down(
    tmp_path: Path,
) -> None:
    outbox = make_outbox(tmp_path)
    for i in range(50):
        outbox.append(_event(i))
    sent: list[int] = []

    def publish(topic: str, payload: bytes) -> int:
        sent.append(json.loads(payload)["seq"])
        return len(sent)

    clock = FakeClock()
    drain = UplinkDrain(outbox, EVENTS, window=4, acknowledger=CentreAcknowledger(clock, 60))
    drain.fill(publish)
    drain.on_pubacks([1, 2, 3, 4])  # the broker has them; the centre is silent
    assert drain.fill(publish) == 0  # PUBACKed-but-unconfirmed events fill the window
    assert backlog(outbox) == 50
    clock.t = 61
    assert drain.acknowledger.overdue(clock.t)
    drain.restart()  # what the service does when the centre is overdue
    drain.fill(publish)
    assert sent == [1, 2, 3, 4, 1, 2, 3, 4]
    drain.on_pubacks([5, 6])
    assert drain.on_centre_ack(b'{"upto": 2}') == 2  # the centre is back
    assert backlog(outbox) == 48
    drain.fill(publish)
    assert sent[8:] == [5, 6]  # room for two more
    assert drain.on_centre_ack(b'{"upto": "x"}') == 0  # malformed: ignored, nothing deleted
    assert backlog(outbox) == 48


def test_a_centre_ack_handled_before_its_puback_still_deletes_the_row(tmp_path: Path) -> None:
    # The worker takes the centre's message and the broker's PUBACKs from one queue in
    # batches: the ack may be handled first. The row must go at the PUBACK, not wait
    # ack_timeout_s to be sent again.
    outbox = make_outbox(tmp_path)
    for i in range(3):
        outbox.append(_event(i))
    sent: list[int] = []

    def publish(topic: str, payload: bytes) -> int:
        sent.append(json.loads(payload)["seq"])
        return len(sent)

    drain = UplinkDrain(outbox, EVENTS, window=4,
                        acknowledger=CentreAcknowledger(FakeClock(), 60))
    drain.fill(publish)
    assert drain.on_centre_ack(b'{"seqs": [1, 2]}') == 0  # nothing PUBACKed yet
    drain.on_pubacks([1, 2, 3])
    assert backlog(outbox) == 1  # 1 and 2 confirmed by the early ack; 3 waits for the centre
    assert drain.on_centre_ack(b'{"seqs": [3]}') == 1
    assert backlog(outbox) == 0
