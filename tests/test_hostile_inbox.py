"""The controller's two queues: what a flood can and cannot take, and what is never silent."""

from __future__ import annotations

import queue
import time
from pathlib import Path

import nacl.signing
import pytest

from agent.core.bounds import MQTT_LIST_BYTES
from agent.core.events import DoorInput, Inbound, Scan, Stop
from agent.gate.inbound import MAX_PACKET_BYTES, SLOTS, Admission, Inbox, RefusalReports
from agent.protocol import cose
from agent.protocol.command import make_command, sign_command
from agent.protocol.revocation import RevocationEntry, RevocationList, sign_revocation_list
from agent.sync.broker import broker_settings
from agent.sync.service import SyncService
from tests.broker import Broker
from tests.credkit import GATE, NOW, SITE, Kit
from tests.sync_support import Subscriber, make_outbox


@pytest.fixture
def kit() -> Kit:
    return Kit()


def _cmd(kit: Kit, n: int) -> Inbound:
    cmd = make_command("status", f"{SITE}/{GATE}", now=NOW, cmd_id=f"c{n}")
    return Inbound("cmd", sign_command(cmd, kit.ops, kit.ops_kid))


def _scan(n: int) -> Scan:
    return Scan(f"code {n}", "sim", NOW, 0.0)


def test_admission_refuses_garbage_foreign_and_forged_before_a_slot(kit: Kit) -> None:
    admission = Admission(kit.keyring)
    forged = cose.encode(cose.sign1(b"\xa0", nacl.signing.SigningKey.generate(), kit.ops_kid,
                                    typ="gate.command.v1"))
    foreign = sign_command(make_command("open", f"{SITE}/{GATE}", now=NOW),
                           nacl.signing.SigningKey.generate(), "ops-9")
    assert admission.check(Inbound("cmd", b"\x00garbage")) == "malformed"
    assert admission.check(Inbound("cmd", forged)) == "bad_signature"
    assert admission.check(Inbound("cmd", foreign)) == "unknown_key"
    assert (admission.check(Inbound("cmd", bytes(5000))) or "").startswith("oversize")
    assert admission.check(Inbound("time", _cmd(kit, 1).payload)) == "malformed"  # wrong typ
    assert admission.check(_cmd(kit, 1)) is None


def test_a_big_full_list_has_its_signature_checked_before_it_takes_a_slot(kit: Kit) -> None:
    entries = tuple(RevocationEntry("cti", f"{n:016x}") for n in range(500_000))
    data = sign_revocation_list(RevocationList("full", 2, None, int(NOW), entries),
                                kit.ops, kit.ops_kid)
    assert 4 * 1024 * 1024 < len(data) <= MQTT_LIST_BYTES
    admission = Admission(kit.keyring)
    assert admission.check(Inbound("revocations_full", data)) is None
    tampered = data[:-64] + bytes(64)  # the real kid, the signature zeroed
    assert admission.check(Inbound("revocations_full", tampered)) == "bad_signature"
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1  # one entry changed
    assert admission.check(Inbound("revocations_full", bytes(flipped))) == "bad_signature"
    stranger = Admission(Kit(ops_kid="ops-other").keyring)
    assert stranger.check(Inbound("revocations_full", data)) == "unknown_key"
    inbox = Inbox(admission)
    assert inbox.put_centre(Inbound("revocations_full", tampered)) == "bad_signature"
    assert inbox.status()["centre_bytes"] == 0 and inbox.empty()


def test_a_full_list_over_the_mqtt_cap_is_refused_by_size(kit: Kit) -> None:
    assert MAX_PACKET_BYTES > MQTT_LIST_BYTES  # what the gate tells the broker
    reason = Admission(kit.keyring).check(Inbound("revocations_full", bytes(MQTT_LIST_BYTES + 1)))
    assert (reason or "").startswith("oversize")


def test_centre_messages_never_take_the_place_of_a_scan(kit: Kit) -> None:
    inbox = Inbox(Admission(kit.keyring), local_slots=4)
    results = [inbox.put_centre(_cmd(kit, n)) for n in range(SLOTS["cmd"] + 5)]
    assert results.count(None) == SLOTS["cmd"] and results.count("no_room") == 5
    assert inbox.dropped == {"cmd": 5}
    assert all(inbox.put_local(_scan(n)) for n in range(4))
    assert not inbox.put_local(_scan(5)) and inbox.local_dropped == 1
    inbox.put_centre(Inbound("cmd", b"junk"))
    assert inbox.refused == {"malformed": 1}
    # Scans first, in order, then the centre's messages.
    assert [inbox.get(0) for _ in range(4)] == [_scan(n) for n in range(4)]
    assert isinstance(inbox.get(0), Inbound)


def test_a_dropped_list_asks_for_a_resync_once_and_queued_bytes_are_bounded(kit: Kit) -> None:
    clock = [100.0]
    lst = sign_revocation_list(RevocationList("full", 3, None, int(NOW), ()), kit.ops, "ops1")
    big = sign_revocation_list(RevocationList("full", 4, None, int(NOW),
                                              (RevocationEntry("sub", "C-1"),)), kit.ops, "ops1")
    inbox = Inbox(Admission(kit.keyring), centre_max_bytes=len(lst) + 10,
                  monotonic=lambda: clock[0])
    assert inbox.put_centre(Inbound("revocations_full", lst)) is None
    assert not inbox.resync_due()
    assert inbox.put_centre(Inbound("revocations_full", big)) == "no_room"
    assert inbox.status()["centre_bytes"] == len(lst)
    assert inbox.resync_due() and not inbox.resync_due()
    assert inbox.put_centre(Inbound("revocations_full", big)) == "no_room"
    assert not inbox.resync_due()  # not again within RESYNC_EVERY_S
    clock[0] += 11
    assert inbox.resync_due()


def test_replaying_one_genuine_message_does_not_fill_a_lane(kit: Kit) -> None:
    inbox = Inbox(Admission(kit.keyring))
    ev = _cmd(kit, 1)
    assert inbox.put_centre(ev) is None
    assert {inbox.put_centre(ev) for _ in range(100)} == {"duplicate"}
    assert inbox.get(0) == ev
    assert inbox.put_centre(ev) == "duplicate"  # a command seen lately is not taken again
    assert inbox.put_centre(_cmd(kit, 2)) is None


def test_close_hands_out_what_was_queued_then_stop(kit: Kit) -> None:
    inbox = Inbox(Admission(kit.keyring))
    inbox.put_local(DoorInput("exit", NOW))
    inbox.put_centre(_cmd(kit, 1))
    inbox.close(Stop("shutdown"))
    assert not inbox.put_local(_scan(1))
    kinds = [type(inbox.get(0)).__name__ for _ in range(3)]
    assert kinds == ["DoorInput", "Inbound", "Stop"]


def test_refusal_results_are_rate_limited() -> None:
    clock = [0.0]
    reports = RefusalReports(burst=3, per_s=10.0, monotonic=lambda: clock[0])
    assert [reports.allow() for _ in range(10)].count(True) == 3
    clock[0] += 10
    assert [reports.allow() for _ in range(10)].count(True) == 3


def test_the_sync_worker_refuses_oversize_payloads_before_queueing(
    tmp_path: Path, broker: Broker
) -> None:
    delivered: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
    sync = SyncService(broker_settings(broker.url), SITE, GATE, make_outbox(tmp_path / "o"),
                       delivered.put, lambda: {}, payload_caps={"cmd": 100})
    sync.start()
    publisher = Subscriber(broker.url, ["unused/topic"])
    try:
        deadline = time.monotonic() + 10
        while not sync.connected:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # connected means subscribed: the SUBACK came first
        publisher.publish(f"gate/v1/{SITE}/{GATE}/cmd", bytes(101))
        publisher.publish(f"gate/v1/{SITE}/{GATE}/cmd", bytes(100))
        first = delivered.get(timeout=10)
        assert first.kind == "connected"  # the link's own signal comes first
        assert delivered.get(timeout=10).payload == bytes(100)
        assert sync.oversize == 1 and delivered.empty()
    finally:
        publisher.close()
        sync.stop()
