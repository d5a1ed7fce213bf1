"""Big MQTT payloads through a real Mosquitto: the broker never forwards more than the
gate states it takes, and a real daemon process under big-payload attacks stays within
+32 MB of its idle RSS (read from /proc)."""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from agent.core.bounds import MQTT_LIST_BYTES
from agent.core.events import Inbound
from agent.demo.kit import OPS_KID
from agent.gate.inbound import CAPS, MAX_PACKET_BYTES
from agent.protocol import cose
from agent.protocol.revocation import DOC_TYPE
from agent.sync.broker import broker_settings
from agent.sync.service import SyncService
from tests.broker import Broker
from tests.credkit import GATE, SITE
from tests.daemon_support import DaemonProcess, gate_files
from tests.sync_support import Subscriber, make_outbox

pytestmark = pytest.mark.slow

MB = 1024 * 1024
RSS_BOUND_MB = 32


def test_the_broker_never_forwards_more_than_the_gate_takes(
    tmp_path: Path, broker: Broker
) -> None:
    delivered: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
    sync = SyncService(broker_settings(broker.url), SITE, GATE, make_outbox(tmp_path / "o"),
                       delivered.put, lambda: {}, payload_caps=CAPS)
    sync.start()
    publisher = Subscriber(broker.url, ["unused/topic"])
    cmd = f"gate/v1/{SITE}/{GATE}/cmd"
    try:
        assert delivered.get(timeout=10).kind == "connected"
        # "connected" comes after the SUBACK: the subscriptions are live
        publisher.publish("gate/v1/revocations/full", bytes(MAX_PACKET_BYTES + 1))
        publisher.publish(cmd, bytes(CAPS["cmd"] + 1))  # fits the packet, not the cap
        publisher.publish(cmd, b"last")
        assert delivered.get(timeout=10).payload == b"last"
        # The big one never reached paho (else it would be counted as oversize here),
        # the small one over its cap did, and the connection stayed up throughout.
        assert sync.oversize == 1 and delivered.empty()
        assert sync.connected and sync.connects == 1
    finally:
        publisher.close()
        sync.stop()


def _kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _status(watcher: Subscriber) -> dict[str, Any]:
    statuses = watcher.json_on("/status")
    return statuses[-1] if statuses else {}


def _refused(status: dict[str, Any]) -> int:
    inbound = status.get("inbound", {})
    return sum(inbound.get("refused", {}).values()) + status.get("inbound_oversize", 0)


def test_big_payload_attacks_stay_within_32_mb_of_the_idle_daemon(
    tmp_path: Path, broker: Broker
) -> None:
    kit, config = gate_files(tmp_path, broker.url)
    with config.open("a", encoding="utf-8") as fh:
        fh.write("status_interval_s = 1\n")  # [mqtt] is the file's last table
    watcher = Subscriber(broker.url, [f"gate/v1/{kit.site}/{kit.gate}/status"])
    size = MQTT_LIST_BYTES - 1024
    # The real ops kid, signed by another key: only the signature check can refuse it.
    forged = cose.encode(cose.sign1(os.urandom(size - 200), nacl.signing.SigningKey.generate(),
                                    OPS_KID, typ=DOC_TYPE))
    assert size - 200 < len(forged) <= MQTT_LIST_BYTES
    unsigned = os.urandom(size)
    daemon = DaemonProcess(config)
    try:
        assert watcher.wait_for(lambda _: _status(watcher).get("online") is True, 30), \
            daemon.stderr()
        time.sleep(2.0)  # start-up work settles (first status, time request)
        pid = daemon.proc.pid
        idle_kb = _kb(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        before = _refused(_status(watcher))
        attacks = [forged, forged[:-1] + b"\x00", *(unsigned[:-1] + bytes([n]) for n in range(3)),
                   bytes(90 * MB)]
        for payload in attacks:
            watcher.publish("gate/v1/revocations/full", payload)
        watcher.publish("gate/v1/revocations/full", b"the last one")  # in order: after all
        expected = before + len(attacks)  # the 90 MB one never reaches the gate: "last" does
        assert watcher.wait_for(lambda _: _refused(_status(watcher)) >= expected, 60), \
            _status(watcher).get("inbound")
        peak_mb = (_kb(pid, "VmHWM") - idle_kb) / 1024
        inbound = _status(watcher)["inbound"]
        assert inbound["refused"].get("bad_signature", 0) == 2, inbound
        assert inbound["centre_bytes"] == 0 and inbound["dropped"] == {}
        assert peak_mb <= RSS_BOUND_MB, f"peak +{peak_mb:.1f} MB over idle {idle_kb / 1024:.0f}"
    finally:
        daemon.kill()
        watcher.close()


def test_a_full_list_the_broker_drops_for_the_gate_still_makes_it_ask_for_one(
    tmp_path: Path, broker: Broker
) -> None:
    # A retained full list over the gate's Maximum Packet Size never reaches it; a gate
    # without a list knows it lacks one and keeps asking (resync), and says so in status.
    kit, config = gate_files(tmp_path, broker.url, with_list=False)
    base = f"gate/v1/{kit.site}/{kit.gate}"
    watcher = Subscriber(broker.url, [f"{base}/status", f"{base}/resync"])
    watcher.publish("gate/v1/revocations/full", bytes(MAX_PACKET_BYTES + 1), retain=True)
    daemon = DaemonProcess(config)
    try:
        assert watcher.wait_for(lambda _: bool(watcher.json_on("/resync")), 30), daemon.stderr()
        assert watcher.json_on("/resync")[0]["have_version"] is None
        assert watcher.wait_for(lambda _: _status(watcher).get("online") is True, 30)
        status = _status(watcher)
        assert status["revocations"]["version"] is None, status["revocations"]
        assert status.get("inbound_oversize", 0) == 0  # dropped by the broker, not read
    finally:
        daemon.kill()
        watcher.close()
