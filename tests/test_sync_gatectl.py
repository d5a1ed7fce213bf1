"""gatectl's broker commands as a script uses them: output lines and exit codes."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.cli import gatectl
from agent.sync.broker import broker_settings
from agent.sync.service import SyncService
from tests.broker import Broker
from tests.sync_support import Subscriber, make_ops_keys, make_outbox


def test_watch_shows_the_retained_status_of_a_gate(
        broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sync = SyncService(broker_settings(broker.url), "s1", "g1", make_outbox(tmp_path),
                       queue.SimpleQueue().put, lambda: {"door": "locked"})
    sync.start()
    try:
        deadline = time.monotonic() + 10
        while not sync.connected:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert gatectl.main(["watch", "s1/g1", "--broker", broker.url, "--json",
                             "--count", "1", "--duration", "10s"]) == 0
        line = json.loads(capsys.readouterr().out)
        assert line["type"] == "status" and line["online"] is True and line["retained"]
        assert line["door"] == "locked"
        assert gatectl.main(["watch", "s1", "--broker", broker.url, "--count", "1"]) == 0
        assert "s1/g1 status online door=locked" in capsys.readouterr().out
    finally:
        sync.stop()


def test_watch_shows_a_gate_asking_for_a_full_list(
        broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sync = SyncService(broker_settings(broker.url), "s1", "g1", make_outbox(tmp_path),
                       queue.SimpleQueue().put, lambda: {"door": "locked"})
    sync.start()
    codes: list[int] = []
    watcher = threading.Thread(target=lambda: codes.append(gatectl.main(
        ["watch", "s1", "--broker", broker.url, "--count", "2", "--duration", "20s"])))
    try:
        watcher.start()
        while watcher.is_alive():  # the request is not retained: repeat until watch saw one
            if sync.connected:
                sync.request_resync("delta base 4 does not follow version 3", 3)
            watcher.join(0.2)
        assert codes == [0]
        out = capsys.readouterr().out
        assert ("s1/g1 asks for a full revocation list: delta base 4 does not follow "
                "version 3 (has version 3)") in out
    finally:
        sync.stop()


def test_open_without_an_answer_times_out_with_exit_1(
        broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ops = make_ops_keys(tmp_path)
    code = gatectl.main(["open", "s1/nobody", "--key", str(ops.key_file), "--broker",
                         broker.url, "--wait", "0.5"])
    assert code == 1
    assert "timeout" in capsys.readouterr().err


def test_publish_refuses_a_file_that_is_not_a_revocation_list(
        broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.cose"
    junk.write_bytes(b"not cbor")
    assert gatectl.main(["revocations", "publish", str(junk), "--broker", broker.url]) == 2
    assert "not a signed revocation list" in capsys.readouterr().err


def test_publish_refuses_a_full_list_bigger_than_gates_take_over_mqtt(
        broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.core.bounds import MQTT_LIST_BYTES
    from agent.protocol.revocation import DOC_TYPE
    from agent.protocol.signed_doc import sign_document

    ops = make_ops_keys(tmp_path / "ops")
    body = {"k": "full", "v": 9, "b": None, "t": int(time.time()), "a": [bytes(32)] * 10,
            "r": [], "pad": bytes(MQTT_LIST_BYTES)}  # only its size matters here
    big = tmp_path / "big.cbor"
    big.write_bytes(sign_document(DOC_TYPE, body, ops.key, "ops-1"))
    listener = Subscriber(broker.url, ["gate/v1/revocations/full"])
    try:
        assert gatectl.main(["revocations", "publish", str(big), "--broker", broker.url]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "gate-agent revocations apply big.cbor" in err
        assert not listener.wait_for(lambda msgs: bool(msgs), 0.5)  # nothing went out
    finally:
        listener.close()


def test_unreachable_broker_is_one_line_and_exit_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ops = make_ops_keys(tmp_path)
    assert gatectl.main(["open", "s1/g1", "--key", str(ops.key_file),
                         "--broker", "mqtt://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot connect" in err


def _event(seq: int, reason: str) -> bytes:
    return json.dumps({"seq": seq, "kind": "scan", "granted": reason == "ok", "reason": reason,
                       "sub": f"C-{seq}", "ts": "2026-12-01T10:00:00Z"}).encode()


def _publish_until(broker: Broker, payload: bytes, seen: Callable[[], bool]) -> None:
    """Publish (not retained) until the watcher printed it: it may still be connecting."""
    deadline = time.monotonic() + 30
    while not seen():
        assert time.monotonic() < deadline, "gatectl watch never showed the event"
        try:
            publisher = Subscriber(broker.url, ["unused/#"])
        except (OSError, AssertionError):
            time.sleep(0.3)  # the broker is still coming back
            continue
        try:
            publisher.publish("gate/v1/s1/g1/events", payload)
        finally:
            publisher.close()
        time.sleep(0.3)


def test_watch_survives_a_broker_restart_and_says_when_it_lost_and_regained_it(
        broker: Broker) -> None:
    watcher = subprocess.Popen(
        [sys.executable, "-m", "agent.cli.gatectl", "watch", "s1", "--broker", broker.url,
         "--duration", "60s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=lambda f=f, sink=sink: sink.extend(f), daemon=True)
               for f, sink in ((watcher.stdout, out), (watcher.stderr, err))]
    for reader in readers:
        reader.start()
    try:
        _publish_until(broker, _event(1, "ok"), lambda: any("#1 scan" in x for x in out))
        broker.kill()
        broker.start()
        _publish_until(broker, _event(2, "revoked"), lambda: any("#2 scan" in x for x in out))
    finally:
        watcher.terminate()
        watcher.wait(10)
    stderr = "".join(err)
    assert any("#2 scan denied revoked sub=C-2" in line for line in out)  # heard after it
    assert "lost the broker" in stderr and "is back: watching again" in stderr
    assert "Traceback" not in stderr


def test_time_publish_sends_one_signed_time_message_the_gates_accept(
        broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.protocol.timemsg import parse_time

    ops = make_ops_keys(tmp_path / "keys")
    listener = Subscriber(broker.url, ["gate/v1/time"])
    try:
        before = time.time()
        assert gatectl.main(["time", "publish", "--key", str(ops.key_file),
                             "--broker", broker.url]) == 0
        assert "published signed time" in capsys.readouterr().out
        assert listener.wait_for(lambda msgs: len(msgs) == 1, 10)
        (_topic, payload, retained), = listener.messages
        msg = parse_time(payload, ops.keyring, time.time())
        assert not retained and before - 1 <= msg.t <= time.time() + 1
    finally:
        listener.close()


def test_publish_with_trust_refuses_a_list_the_gates_would_refuse(
        broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.protocol.revocation import RevocationList, sign_revocation_list

    gates_trust = make_ops_keys(tmp_path / "gates")
    stranger = make_ops_keys(tmp_path / "stranger", kid="ops-1")  # same kid, other key
    lst = RevocationList("full", 7, None, int(time.time()), ())
    wrong = tmp_path / "wrong.cbor"
    wrong.write_bytes(sign_revocation_list(lst, stranger.key, "ops-1"))
    right = tmp_path / "right.cbor"
    right.write_bytes(sign_revocation_list(lst, gates_trust.key, "ops-1"))
    listener = Subscriber(broker.url, ["gate/v1/revocations/full"])
    try:
        capsys.readouterr()
        assert gatectl.main(["revocations", "publish", str(wrong), "--trust",
                             str(gates_trust.ops_dir), "--broker", broker.url]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "would be refused by the gates" in err
        assert gatectl.main(["revocations", "publish", str(right), "--trust",
                             str(gates_trust.ops_dir), "--broker", broker.url]) == 0
        assert listener.wait_for(lambda msgs: len(msgs) == 1, 10)
        assert listener.messages[0][1] == right.read_bytes()  # only the good one went out
    finally:
        listener.close()
