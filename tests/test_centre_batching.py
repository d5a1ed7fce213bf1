"""The writer's batches: closed by the oldest event's age, at most ``batch_per_gate`` events
of one gate each, the rest held for the next batch and never lost; end to end, a gate's
burst is committed in shares and another gate's event is not acknowledged behind it."""

from __future__ import annotations

import json
import queue
import time
from dataclasses import dataclass
from pathlib import Path

from agent.centre.batching import Batcher
from agent.centre.config import load_centre_config
from tests.broker import Broker
from tests.centre_support import centre_files, stored
from tests.sync_support import Subscriber
from tests.test_centre_ingest import SITE, start_service


@dataclass(frozen=True)
class Msg:
    topic: str
    n: int
    received_at: float


def _events(gate: str, count: int, at: float | None = None) -> list[Msg]:
    now = time.time() if at is None else at
    return [Msg(f"gate/v1/s/{gate}/events", n, now) for n in range(count)]


def _batcher(msgs: list[Msg], **kw: float) -> tuple[Batcher[Msg], queue.SimpleQueue[Msg | None]]:
    source: queue.SimpleQueue[Msg | None] = queue.SimpleQueue()
    for m in msgs:
        source.put(m)
    args = {"batch_max": 500, "batch_ms": 10.0, "per_gate": 10, **kw}
    return Batcher(source, int(args["batch_max"]), args["batch_ms"],
                   int(args["per_gate"])), source


def test_one_gate_gets_at_most_its_share_and_the_rest_follows_in_order() -> None:
    flood, other = _events("flood", 35), _events("other", 3)
    batcher, _ = _batcher([*flood, *other])
    first = batcher.take()
    assert [m for m in first if m.topic == flood[0].topic] == flood[:10]
    assert [m for m in first if m.topic == other[0].topic] == other  # not behind the flood
    rest = [batcher.take() for _ in range(3)]
    assert [len(b) for b in rest] == [10, 10, 5]
    assert [m for b in rest for m in b] == flood[10:]  # each exactly once, oldest first
    assert batcher.take() == []  # nothing left (after the idle wait)


def test_status_and_results_are_never_held_back() -> None:
    status = Msg("gate/v1/s/flood/status", 0, time.time())
    result = Msg("gate/v1/s/flood/cmd/result", 0, time.time())
    batcher, _ = _batcher([*_events("flood", 20), status, result], per_gate=5)
    first = batcher.take()
    assert status in first and result in first and len(first) == 7


def test_a_batch_whose_oldest_event_already_waited_closes_at_once() -> None:
    """An event that waited through the last commit does not wait another batch_ms."""
    old = _events("g1", 1, at=time.time() - 60.0)
    batcher, _ = _batcher(old, batch_ms=30_000.0)
    started = time.monotonic()
    assert batcher.take() == old
    assert time.monotonic() - started < 10.0  # far below the 30 s batch age


def test_batch_max_still_bounds_a_batch_and_stop_drains_what_is_held() -> None:
    many = [m for g in range(30) for m in _events(f"g{g}", 3)]
    batcher, source = _batcher(many, batch_max=40, per_gate=2)
    source.put(None)
    batches = []
    while batch := batcher.take():
        assert len(batch) <= 40
        batches.append(batch)
    assert sorted((m.topic, m.n) for b in batches for m in b) == \
        sorted((m.topic, m.n) for m in many)
    assert batcher.stopped


def test_a_gates_burst_is_stored_in_shares_and_another_gate_is_not_behind_it(
        tmp_path: Path, broker: Broker, store_url: str) -> None:
    files = centre_files(tmp_path, broker.url, store_url)
    text = files.config.read_text(encoding="utf-8")
    files.config.write_text(text.replace("[mqtt]", "batch_per_gate = 10\n[mqtt]"),
                            encoding="utf-8")
    assert load_centre_config(files.config).store.batch_per_gate == 10
    service = start_service(files.config)
    pub = Subscriber(broker.url, [f"gate/v1/{SITE}/+/events/ack"])
    try:
        def send(gate: str, seq: int) -> None:
            body = {"id": f"{gate}-{seq}", "seq": seq, "ts": "2026-12-01T10:00:00.000Z",
                    "kind": "scan", "granted": True, "reason": "ok", "sub": "c1"}
            pub.client.publish(f"gate/v1/{SITE}/{gate}/events", json.dumps(body).encode(),
                               qos=1)

        for seq in range(1, 301):
            send("burst", seq)
        send("other", 1)

        def acked(gate: str) -> list[list[int]]:
            return [json.loads(p)["seqs"] for t, p, _ in pub.messages
                    if t == f"gate/v1/{SITE}/{gate}/events/ack"]

        assert pub.wait_for(lambda _m: sum(map(len, acked("burst"))) >= 300
                            and acked("other") != [], 60)
        burst = acked("burst")
        assert sorted(s for seqs in burst for s in seqs) == list(range(1, 301))
        assert max(map(len, burst)) <= 10  # no commit carried more of one gate
        topics = [t for t, _, _ in pub.messages]
        last_burst = max(i for i, (t, p, _) in enumerate(pub.messages)
                         if t.endswith("/burst/events/ack") and 300 in json.loads(p)["seqs"])
        assert topics.index(f"gate/v1/{SITE}/other/events/ack") < last_burst
        rows = stored(store_url)
        assert sorted((g, q) for _, g, q, _ in rows) == \
            sorted([("burst", s) for s in range(1, 301)] + [("other", 1)])
    finally:
        pub.close()
        service.stop()
