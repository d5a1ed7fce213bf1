"""gate-centre under failure, with real parts: a SIGKILLed centre process restarted
mid-stream, a database that goes away, and holes the sweeper repairs (or records lost)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from agent.centre.store import connect, queries
from tests.broker import Broker
from tests.centre_support import CentreProcess, Gate, centre_files, stored
from tests.daemon_support import wait_until
from tests.postgres import Postgres
from tests.sync_support import Subscriber
from tests.test_centre_ingest import start_service

SITE = "binhai-0001"


def test_a_killed_centre_restarted_mid_stream_loses_nothing(
        tmp_path: Path, broker: Broker, store_url: str) -> None:
    files = centre_files(tmp_path, broker.url, store_url)
    centre = CentreProcess(files.config)
    gates = [Gate(tmp_path, broker.url, SITE, f"g{i}", ack_timeout_s=1.0).start()
             for i in range(3)]
    ids: dict[str, list[str]] = {g.gate: [] for g in gates}
    stop = threading.Event()

    def produce(g: Gate) -> None:
        while not stop.is_set() and len(ids[g.gate]) < 600:
            ids[g.gate].extend(g.append(20))
            time.sleep(0.02)

    threads = [threading.Thread(target=produce, args=(g,)) for g in gates]
    try:
        for t in threads:
            t.start()
        assert wait_until(lambda: len(stored(store_url)) > 300, 20)
        centre.kill()  # SIGKILL: whatever it held uncommitted is simply gone
        centre = CentreProcess(files.config, name="centre2")
        for t in threads:
            t.join(30)
        assert wait_until(lambda: all(g.backlog == 0 for g in gates), 40), \
            [g.backlog for g in gates]
        rows = stored(store_url)
        assert len(rows) == 1800
        for g in gates:
            assert [i for _, gg, _, i in rows if gg == g.gate] == ids[g.gate]
    finally:
        stop.set()
        for g in gates:
            g.stop()
        centre.kill()


def test_database_down_nothing_acknowledged_and_nothing_lost_after(
        tmp_path: Path, broker: Broker) -> None:
    server = Postgres(tmp_path / "pg")
    server.start()
    url = server.create_database()
    files = centre_files(tmp_path, broker.url, url)
    service = start_service(files.config)
    acks = Subscriber(broker.url, [f"gate/v1/{SITE}/+/events/ack"])
    gate = Gate(tmp_path, broker.url, SITE, "g1", ack_timeout_s=1.0).start()
    try:
        gate.append(50)
        assert wait_until(lambda: gate.backlog == 0, 20)
        server.kill()
        acked_before = len(acks.messages)
        gate.append(100)
        assert wait_until(lambda: service.counters.store_failures >= 2, 20)
        time.sleep(2)  # the gate re-sends after ack_timeout_s: still nothing may be acked
        assert len(acks.messages) == acked_before
        assert gate.backlog == 100
        server.start()
        assert wait_until(lambda: gate.backlog == 0, 40), (
            gate.backlog, service.counters, service.link.connected, gate.sync.connected)
        rows = stored(url)
        assert [q for _, _, q, _ in rows] == list(range(1, 151))
        acked = {s for _, p, _ in acks.messages[acked_before:] for s in json.loads(p)["seqs"]}
        assert acked == set(range(51, 151))
    finally:
        gate.stop()
        acks.close()
        service.stop()
        server.stop()


def test_holes_get_a_signed_resend_and_what_the_gate_no_longer_has_is_lost(
        tmp_path: Path, broker: Broker, store_url: str) -> None:
    files = centre_files(tmp_path, broker.url, store_url, hole_after_s=0.5,
                         resend_every_s=1.0, attempts=3)
    dropped = Gate(tmp_path, broker.url, SITE, "dropped", keyring=files.ops.keyring)
    pruned = Gate(tmp_path, broker.url, SITE, "pruned", keyring=files.ops.keyring)
    for g in (dropped, pruned):
        g.append(10)
        # The broker PUBACKed 4-6 and dropped them (ack = "puback", a crash, an ACL):
        g.outbox.ack([4, 5, 6])
    with sqlite3.connect(pruned.outbox.path) as conn:  # ... and this gate pruned them since
        conn.execute("DELETE FROM entries WHERE seq BETWEEN 4 AND 6")
    service = start_service(files.config)
    try:
        dropped.start()
        pruned.start()
        # 7 + 7 arrive at once; the resend brings the dropped gate's 4-6 back.
        assert wait_until(lambda: len(stored(store_url)) == 17, 20)
        assert ("resend", 4, 6) in dropped.commands
        db = connect(store_url)
        try:
            def settled() -> bool:
                rows = queries.gates(db, time.time())
                by = {r["gate"]: r for r in rows}
                return bool(by["pruned"]["lost"]) and not by["dropped"]["holes"]
            assert wait_until(settled, 20)
            rows = {r["gate"]: r for r in queries.gates(db, time.time())}
        finally:
            db.close()
        assert rows["dropped"]["holes"] == [] and rows["dropped"]["lost"] == []
        lost = rows["pruned"]["lost"]
        assert [(x["from"], x["to"]) for x in lost] == [(4, 6)]
        assert "no longer keeps" in lost[0]["reason"]
        assert rows["pruned"]["holes"] == [] and "lost" in rows["pruned"]["problems"]
        assert sorted(q for _, g, q, _ in stored(store_url) if g == "dropped") == \
            list(range(1, 11))
    finally:
        dropped.stop()
        pruned.stop()
        service.stop()


def test_a_lost_tail_is_seen_from_the_gates_status_and_filled_by_resend(
        tmp_path: Path, broker: Broker, store_url: str) -> None:
    """The broker PUBACKed a gate's newest events and dropped them: no later event shows
    the hole, but the gate's status (newest seq, nothing waiting) does."""
    files = centre_files(tmp_path, broker.url, store_url, hole_after_s=0.5,
                         resend_every_s=1.0, attempts=3)
    gate = Gate(tmp_path, broker.url, SITE, "tail", keyring=files.ops.keyring)
    gate.append(10)
    gate.outbox.ack([8, 9, 10])  # ack = "puback": gone from the outbox, never delivered
    service = start_service(files.config)
    try:
        gate.start()  # its birth status: newest 10, 7 waiting, so sent up to 3 only
        assert wait_until(lambda: len(stored(store_url)) == 7, 20)
        time.sleep(1.0)  # > hole_after_s: nothing is asked while the status says waiting
        assert gate.commands == []
        gate.sync.publish_status_now()  # newest 10, nothing waiting: 8-10 are missing
        assert wait_until(lambda: len(stored(store_url)) == 10, 20)
        assert gate.commands and set(gate.commands) == {("resend", 8, 10)}
        db = connect(store_url)
        try:
            assert wait_until(lambda: not next(
                r for r in queries.gates(db, time.time()) if r["gate"] == "tail")["holes"], 10)
        finally:
            db.close()
    finally:
        gate.stop()
        service.stop()
