"""Hostile input through a real Mosquitto against the real daemon: floods never displace
a signed delta or a courier's scan; out-of-bound values are refused, and damaged state
restored at start is an alarm, not a crash."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path
from typing import Any

import nacl.signing
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.demo.kit import OPS_KID, DemoKit
from agent.protocol import cose
from agent.protocol.command import COMMAND_TYPE
from agent.protocol.revocation import RevocationEntry, RevocationList, sign_revocation_list
from agent.protocol.signed_doc import sign_document
from agent.protocol.timemsg import TIME_TYPE
from agent.store import Meta
from tests.broker import Broker
from tests.daemon_support import DaemonProcess, clip, gate_files
from tests.sync_support import Subscriber

pytestmark = pytest.mark.slow

ROUNDS = 10  # the red team saw the delta dropped in 4 of 10 runs
GARBAGE_PER_ROUND = 10_000


def garbage(rng: random.Random, kid: str) -> bytes:
    """Unsigned junk of the kinds a flood holds: noise, JSON, and COSE envelopes naming the
    real ops kid with a signature by some other key."""
    pick = rng.random()
    if pick < 0.4:
        return rng.randbytes(rng.randint(1, 400))
    if pick < 0.7:
        return json.dumps({"action": "open", "id": rng.randbytes(6).hex()}).encode()
    forged = cose.sign1(rng.randbytes(40), FOREIGN, kid, typ=rng.choice(
        ["gate.command.v1", "gate.revocations.v1"]))
    return cose.encode(forged)


FOREIGN = nacl.signing.SigningKey.generate()


class Publisher:
    """A fast QoS 1 publisher: publish() does not wait; drain() waits for every PUBACK."""

    def __init__(self, url: str) -> None:
        host, port = url.split("://")[-1].split(":")
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.max_inflight_messages_set(1000)
        self.client.connect(host, int(port))
        self.client.loop_start()
        self.infos: list[paho.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.infos.append(self.client.publish(topic, payload, qos=1, retain=retain))

    def drain(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for info in self.infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self.infos.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def status_of(watcher: Subscriber) -> dict[str, Any]:
    statuses = watcher.json_on("/status")
    return statuses[-1] if statuses else {}


def fast_status(config: Path) -> None:
    with config.open("a", encoding="utf-8") as fh:
        fh.write("status_interval_s = 1\n")  # [mqtt] is the file's last table


def delta(kit: DemoKit, base: int, sub: str) -> bytes:
    lst = RevocationList("delta", base + 1, base, int(time.time()), (RevocationEntry("sub", sub),))
    return sign_revocation_list(lst, kit.ops, OPS_KID)


def test_floods_never_displace_a_signed_delta_or_a_courier_scan(
    tmp_path: Path, broker: Broker
) -> None:
    kit, config = gate_files(tmp_path, broker.url, door={"unlock_s": 0.2})
    fast_status(config)
    now = time.time()
    couriers = [kit.credential(f"C-{n}", now, holder=False) for n in range(8)]
    source = clip(tmp_path, couriers, show_s=0.6, gap_s=0.9)
    watcher = Subscriber(broker.url, [f"gate/v1/{kit.site}/{kit.gate}/status"])
    flood = Publisher(broker.url)
    rng = random.Random(16)
    base = f"gate/v1/{kit.site}/{kit.gate}"
    try:
        flood.publish("gate/v1/revocations/full", kit.revocation_list(1, now), retain=True)
        flood.drain()
        daemon = DaemonProcess(config, "--source", str(source))
        assert watcher.wait_for(
            lambda _: status_of(watcher).get("revocations", {}).get("version") == 1, 30
        ), daemon.stderr()
        for version in range(1, ROUNDS + 1):
            for n in range(GARBAGE_PER_ROUND):
                if n == GARBAGE_PER_ROUND // 2:
                    flood.publish("gate/v1/revocations/delta", delta(kit, version, f"R-{version}"))
                topic = f"{base}/cmd" if n % 2 else "gate/v1/revocations/delta"
                flood.publish(topic, garbage(rng, OPS_KID))
            flood.drain()
            assert watcher.wait_for(
                lambda _, v=version + 1: status_of(watcher).get("revocations", {})
                .get("version") == v, 30
            ), f"round {version}: delta not installed; {status_of(watcher).get('inbound')}"
        assert daemon.wait_lines(
            lambda lines: sum(x.get("type") == "decision" for x in lines) >= len(couriers), 60
        ), daemon.stderr()
        assert [d["reason"] for d in daemon.of("decision")] == ["ok"] * len(couriers)
        assert watcher.wait_for(
            lambda _: sum(status_of(watcher).get("inbound", {}).get("refused", {}).values())
            >= ROUNDS * GARBAGE_PER_ROUND, 30
        ), status_of(watcher).get("inbound")
        inbound = status_of(watcher)["inbound"]
        assert sum(inbound["refused"].values()) == ROUNDS * GARBAGE_PER_ROUND
        assert inbound["dropped"] == {} and inbound["local_dropped"] == 0
        assert status_of(watcher)["queue_dropped"] == 0
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        flood.close()
        watcher.close()


def test_huge_mode_and_microsecond_time_are_refused_and_the_gate_restarts(
    tmp_path: Path, broker: Broker
) -> None:
    kit, config = gate_files(tmp_path, broker.url)
    fast_status(config)
    base = f"gate/v1/{kit.site}/{kit.gate}"
    watcher = Subscriber(broker.url, [f"{base}/status", f"{base}/cmd/result"])
    try:
        daemon = DaemonProcess(config)
        assert watcher.wait_for(lambda _: status_of(watcher).get("online") is True, 30)
        now = int(time.time())
        mode = sign_document(COMMAND_TYPE, {
            "v": 1, "id": "huge-1", "target": f"{kit.site}/{kit.gate}", "action": "mode",
            "mode": "free", "for": 100_000_000 * 86400, "iat": now, "exp": now + 60,
        }, kit.ops, OPS_KID)
        watcher.publish(f"{base}/cmd", mode)
        micro = sign_document(TIME_TYPE, {"v": 1, "t_ms": now * 1_000_000}, kit.ops, OPS_KID)
        watcher.publish("gate/v1/time", micro)
        assert watcher.wait_for(lambda _: bool(watcher.json_on("/cmd/result")), 20)
        result = watcher.json_on("/cmd/result")[0]
        assert result["ok"] is False and result["reason"] == "malformed"
        assert "30 days" in result["detail"]
        assert watcher.wait_for(lambda _: status_of(watcher).get("inbound", {})
                                .get("refused_later") == {"time": 1}, 20), status_of(watcher)
        assert "microseconds" in daemon.stderr()
        assert status_of(watcher)["mode"] == "normal"
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        seen = len(watcher.messages)
        again = DaemonProcess(config)
        assert watcher.wait_for(
            lambda msgs: any(t.endswith("/status") and p and json.loads(p).get("online")
                             for t, p, _ in msgs[seen:]), 30
        ), again.stderr()
        alarms = status_of(watcher).get("alarms", {})
        assert not {"state_damaged", "controller_error"} & set(alarms), alarms
        assert status_of(watcher)["mode"] == "normal"
        again.signal(signal.SIGTERM)
        assert again.wait(30) == 0
    finally:
        watcher.close()


def test_damaged_state_restored_at_start_is_an_alarm_and_the_gate_runs(
    tmp_path: Path, broker: Broker
) -> None:
    kit, config = gate_files(tmp_path, broker.url, door={"unlock_s": 0.2})
    fast_status(config)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    meta = Meta(state)
    meta.set("mode", {"mode": "free", "until": 8.6e12})  # year 275817
    meta.set("time_floor", time.time() * 1_000_000)  # a floor from a microsecond message
    meta.close()
    now = time.time()
    source = clip(tmp_path, [kit.credential("C-1", now, holder=False)])
    watcher = Subscriber(broker.url, [f"gate/v1/{kit.site}/{kit.gate}/status"])
    try:
        daemon = DaemonProcess(config, "--source", str(source))
        assert daemon.wait_lines(lambda lines: any(x.get("type") == "decision" for x in lines),
                                 40), daemon.stderr()
        assert [d["reason"] for d in daemon.of("decision")] == ["ok"]
        assert watcher.wait_for(
            lambda _: "state_damaged" in status_of(watcher).get("alarms", {}), 20
        ), status_of(watcher)
        status = status_of(watcher)
        assert status["mode"] == "normal"
        assert "saved mode end" in status["alarms"]["state_damaged"]
        assert "time floor" in status["alarms"]["state_damaged"]
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        watcher.close()
