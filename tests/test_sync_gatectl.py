"""gatectl's broker commands as a script uses them: output lines and exit codes."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

import pytest

from agent.cli import gatectl
from agent.sync.broker import broker_settings
from agent.sync.service import SyncService
from tests.broker import Broker
from tests.sync_support import make_ops_keys, make_outbox


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


def test_unreachable_broker_is_one_line_and_exit_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ops = make_ops_keys(tmp_path)
    assert gatectl.main(["open", "s1/g1", "--key", str(ops.key_file),
                         "--broker", "mqtt://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot connect" in err
