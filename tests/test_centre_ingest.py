"""gate-centre ingest on a real Mosquitto, into SQLite and into a real PostgreSQL:
exactly once under duplicates, conflicts kept apart, acks exactly what was stored."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.centre import ops
from agent.centre.config import load_centre_config
from agent.centre.service import CentreService
from agent.centre.store import connect, queries
from tests.broker import Broker
from tests.centre_support import Gate, centre_files, stored
from tests.daemon_support import wait_until
from tests.sync_support import Subscriber

SITE = "binhai-0001"


class Running:
    def __init__(self, service: CentreService, url: str, tmp: Path, broker: Broker) -> None:
        self.service, self.url, self.tmp, self.broker = service, url, tmp, broker


def start_service(config: Path) -> CentreService:
    cfg = load_centre_config(config)
    key, kid = ops.ops_key(cfg)
    service = CentreService(cfg, ops.broker(cfg), key, kid, ops.ops_trust(cfg))
    service.start()
    assert service.link.wait_connected(10)
    return service


@pytest.fixture
def centre(tmp_path: Path, broker: Broker, store_url: str) -> Iterator[Running]:
    files = centre_files(tmp_path, broker.url, store_url)
    service = start_service(files.config)
    try:
        yield Running(service, store_url, tmp_path, broker)
    finally:
        service.stop()


def test_every_event_is_stored_once_and_acknowledged_so_outboxes_empty(
        centre: Running) -> None:
    acks = Subscriber(centre.broker.url, ["gate/v1/+/+/events/ack"])
    gates = [Gate(centre.tmp, centre.broker.url, SITE, f"g{i}").start() for i in range(3)]
    try:
        ids = {g.gate: g.append(150) for g in gates}
        assert wait_until(lambda: all(g.backlog == 0 for g in gates), 30)
        rows = stored(centre.url)
        assert len(rows) == 450
        for g in gates:
            mine = [(q, i) for s, gg, q, i in rows if gg == g.gate]
            assert mine == list(enumerate(ids[g.gate], start=1))
        acked = {s for _, p, _ in acks.messages for s in json.loads(p)["seqs"]}
        assert acked == set(range(1, 151))
        assert all(set(json.loads(p)) == {"seqs"} for _, p, _ in acks.messages)
        # The broker delivers one again (a reconnect): no new row, acknowledged again.
        before = len(acks.messages)
        entry = gates[0].outbox.history().__next__()
        body = dict(entry.event, id=entry.id, seq=entry.seq)
        acks.publish(f"gate/v1/{SITE}/g0/events", json.dumps(body).encode())
        assert acks.wait_for(lambda m: len(m) > before)
        assert json.loads(acks.messages[-1][1]) == {"seqs": [1]}
        assert len(stored(centre.url)) == 450
        assert centre.service.counters.duplicates >= 1
    finally:
        for g in gates:
            g.stop()
        acks.close()


def test_same_seq_with_another_id_is_a_conflict_kept_apart(centre: Running) -> None:
    acks = Subscriber(centre.broker.url, [f"gate/v1/{SITE}/clone/events/ack"])
    topic = f"gate/v1/{SITE}/clone/events"
    first = {"id": "a" * 32, "seq": 1, "ts": "2026-12-01T10:00:00.000Z", "kind": "scan",
             "granted": True, "reason": "ok", "sub": "c1"}
    acks.publish(topic, json.dumps(first).encode())
    assert acks.wait_for(lambda m: len(m) == 1)
    clone = dict(first, id="b" * 32, sub="c2")
    acks.publish(topic, json.dumps(clone).encode())
    assert acks.wait_for(lambda m: len(m) == 2)  # stored apart durably: acknowledged
    assert stored(centre.url) == [(SITE, "clone", 1, "a" * 32)]
    db = connect(centre.url)
    try:
        apart = queries.conflicts(db)
        assert [(c["seq"], c["id"], c["stored_id"]) for c in apart] == [(1, "b" * 32, "a" * 32)]
        assert apart[0]["event"]["sub"] == "c2"
        row = next(r for r in queries.gates(db, time.time()) if r["gate"] == "clone")
        assert row["conflicts"] == 1 and "conflicts" in row["problems"]
    finally:
        db.close()
    assert centre.service.counters.conflicts == 1
    acks.close()


def test_malformed_events_are_refused_and_change_nothing(centre: Running) -> None:
    pub = Subscriber(centre.broker.url, [f"gate/v1/{SITE}/bad/events/ack"])
    for payload in (b"not json", b"[]", json.dumps({"id": "x", "seq": 0}).encode(),
                    json.dumps({"id": "x", "seq": 1, "gate": "other"}).encode()):
        pub.publish(f"gate/v1/{SITE}/bad/events", payload)
    assert wait_until(lambda: centre.service.counters.rejected == 4, 10)
    assert stored(centre.url) == []
    assert pub.messages == []
    pub.close()


def test_pubacks_after_each_commit_keep_the_broker_sending(
        tmp_path: Path, broker: Broker, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker may send the centre only 5 unacknowledged messages: 60 events get
    through only if the committed batches' PUBACKs (sent together, in one write) reach
    the broker (without them it stops after 5)."""
    monkeypatch.setattr("agent.centre.link.RECEIVE_MAXIMUM", 5)
    service = start_service(centre_files(tmp_path, broker.url, store_url).config)
    pub = Subscriber(broker.url, [f"gate/v1/{SITE}/narrow/events/ack"])
    try:
        for seq in range(1, 61):
            body = {"id": f"{seq:032x}", "seq": seq, "ts": "2026-12-01T10:00:00.000Z",
                    "kind": "scan", "granted": True, "reason": "ok", "sub": "c1"}
            pub.publish(f"gate/v1/{SITE}/narrow/events", json.dumps(body).encode())
        assert pub.wait_for(
            lambda m: {s for _, p, _ in m for s in json.loads(p)["seqs"]} == set(range(1, 61)))
        assert [q for _, _, q, _ in stored(store_url)] == list(range(1, 61))
    finally:
        pub.close()
        service.stop()
