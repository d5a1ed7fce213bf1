"""The daemon process end to end: mock pins, a video source, a real Mosquitto broker."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest

from tests.broker import Broker
from tests.daemon_support import DaemonProcess, clip, gate_files
from tests.sync_support import Subscriber

pytestmark = pytest.mark.slow


def _events_topic(kit_site: str, gate: str) -> str:
    return f"gate/v1/{kit_site}/{gate}/events"


def test_valid_and_invalid_scans_give_exact_pulses_and_events(
    tmp_path: Path, broker: Broker
) -> None:
    kit, config = gate_files(tmp_path, broker.url, door={"unlock_s": 0.3})
    now = time.time()
    valid = [kit.credential(f"C-{n}", now, holder=False) for n in range(3)]
    revoked = kit.credential("C-9999", now, holder=False)
    expired = kit.credential("C-7", now, not_before=now - 86400, ttl_s=3600, holder=False)
    wrong = kit.credential("C-8", now, scope="elsewhere", holder=False)
    texts = [valid[0], expired, valid[1], "not-a-pass", wrong, valid[2], revoked]
    expected = ["ok", "expired", "ok", "malformed", "wrong_scope", "ok", "revoked"]
    source = clip(tmp_path, texts)
    subscriber = Subscriber(broker.url, [f"gate/v1/{kit.site}/{kit.gate}/#"])
    try:
        # The revoked courier reaches the gate the way the centre sends it: retained, over MQTT.
        subscriber.publish("gate/v1/revocations/full", kit.revocation_list(2, now), retain=True)
        daemon = DaemonProcess(config, "--source", str(source), "--exit-when-source-ends")
        assert daemon.wait(90) == 0, daemon.stderr()
        decisions = daemon.of("decision")
        assert [d["reason"] for d in decisions] == expected
        unlocks = [d for d in daemon.of("door") if d["state"] == "unlocked"]
        assert len(unlocks) == 3
        assert daemon.of("door")[-1]["state"] == "locked"
        assert subscriber.wait_for(
            lambda msgs: len([m for m in msgs if m[0].endswith("/events")]) >= 7, 20
        )
        events = subscriber.json_on("/events")
        assert [e["reason"] for e in sorted(events, key=lambda e: e["seq"])] == expected
        assert sum(e["door"] == "unlocked" for e in events) == 3
        assert subscriber.wait_for(
            lambda msgs: any(
                m[0].endswith("/status") and m[1] and json.loads(m[1])["online"] is False
                for m in msgs
            ), 10
        )
    finally:
        subscriber.close()


def test_sigterm_locks_the_relay_exits_0_and_says_offline(tmp_path: Path, broker: Broker) -> None:
    kit, config = gate_files(tmp_path, broker.url, policy={"mode": "free"})
    status_topic = f"gate/v1/{kit.site}/{kit.gate}/status"
    subscriber = Subscriber(broker.url, [status_topic])
    try:
        daemon = DaemonProcess(config)
        assert subscriber.wait_for(
            lambda msgs: any(m[1] and json.loads(m[1]).get("online") for m in msgs), 30
        ), daemon.stderr()
        assert daemon.wait_lines(lambda lines: any(x.get("state") == "unlocked" for x in lines))
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        assert daemon.of("door")[-1]["state"] == "locked"
        assert daemon.lines[-1] == {"type": "stopped", "exit": 0}
        assert subscriber.wait_for(
            lambda msgs: bool(msgs) and json.loads(msgs[-1][1])["online"] is False, 10
        )
    finally:
        subscriber.close()


def test_sigkill_mid_stream_loses_no_event_behind_a_pulse(tmp_path: Path, broker: Broker) -> None:
    kit, config = gate_files(tmp_path, door={"unlock_s": 0.2})
    now = time.time()
    texts = [kit.credential(f"C-{n}", now, holder=False) for n in range(12)]
    source = clip(tmp_path, texts, show_s=0.4, gap_s=0.4)
    rng = random.Random(6)
    printed_granted: set[int] = set()
    unlocks = 0
    for _ in range(4):
        daemon = DaemonProcess(config, "--source", str(source))
        daemon.wait_lines(lambda lines: any(x.get("type") == "decision" for x in lines), 30)
        time.sleep(rng.uniform(0.2, 3.0))
        daemon.kill()  # SIGKILL: no cleanup at all
        lines = daemon.lines
        # Every pulse is preceded by its granted decision, printed after the append.
        for index, line in enumerate(lines):
            if line.get("type") == "door" and line["state"] == "unlocked":
                unlocks += 1
                before = [x for x in lines[:index] if x.get("type") == "decision"]
                assert before and before[-1]["granted"] and before[-1]["recorded"]
        printed_granted |= {x["seq"] for x in lines if x.get("type") == "decision"
                            and x["granted"]}
    assert unlocks >= 1 and printed_granted
    # Restart with the broker: the outbox drains, with every sequence number, no holes.
    with_broker = tmp_path / "config-broker.toml"
    with_broker.write_text(
        config.read_text() + f'[mqtt]\nurl = "{broker.url}"\nkeepalive_s = 5\nack = "puback"\n'
    )
    subscriber = Subscriber(broker.url, [f"gate/v1/{kit.site}/{kit.gate}/events"])
    try:
        daemon = DaemonProcess(with_broker)
        top = max(printed_granted)
        assert subscriber.wait_for(
            lambda msgs: {json.loads(m[1])["seq"] for m in msgs} >= set(range(1, top + 1)), 30
        ), daemon.stderr()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        seqs = {e["seq"] for e in subscriber.json_on("/events")}
        assert seqs == set(range(1, max(seqs) + 1))
        granted_at_centre = {e["seq"] for e in subscriber.json_on("/events") if e["granted"]}
        assert printed_granted <= granted_at_centre
    finally:
        subscriber.close()


def test_resend_command_sends_acknowledged_events_again(tmp_path: Path, broker: Broker) -> None:
    from agent.demo.kit import OPS_KID
    from agent.protocol.command import make_command, sign_command

    kit, config = gate_files(tmp_path, broker.url, door={"unlock_s": 0.2})
    now = time.time()
    source = clip(tmp_path, [kit.credential(f"C-{n}", now, holder=False) for n in range(3)])
    base = f"gate/v1/{kit.site}/{kit.gate}"
    subscriber = Subscriber(broker.url, [f"{base}/events", f"{base}/cmd/result"])
    try:
        daemon = DaemonProcess(config, "--source", str(source))
        assert subscriber.wait_for(lambda msgs: len(msgs) >= 3, 40), daemon.stderr()
        first = {e["seq"]: e["id"] for e in subscriber.json_on("/events")}
        assert sorted(first) == [1, 2, 3]
        # A broker lost seqs 1-2 after its PUBACK: the centre asks for them again.
        cmd = make_command("resend", f"{kit.site}/{kit.gate}", now=time.time(), seqs=(1, 2))
        subscriber.publish(f"{base}/cmd", sign_command(cmd, kit.ops, OPS_KID))
        assert subscriber.wait_for(lambda msgs: len(msgs) >= 6, 20), daemon.stderr()
        (result,) = subscriber.json_on("/cmd/result")
        assert result["id"] == cmd.id and result["ok"] is True, result
        events = subscriber.json_on("/events")
        again = [(e["seq"], e["id"]) for e in events[3:]]
        assert sorted(again) == [(1, first[1]), (2, first[2])]  # same ids: dedup at the centre
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        subscriber.close()
