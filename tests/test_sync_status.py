"""Online state as the centre sees it: a refused CONNACK is never "connected", and only an
accepted connection publishes the retained birth status."""

from __future__ import annotations

import json
import logging
import queue
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from agent.sync.broker import broker_settings
from agent.sync.service import SyncService
from tests.broker import Broker
from tests.conftest import require
from tests.sync_support import Subscriber, make_outbox

SITE, GATE = "binhai-0001", "north-1"
STATUS = f"gate/v1/{SITE}/{GATE}/status"


@pytest.fixture
def locked_broker(tmp_path: Path) -> Broker:
    """A broker that wants a user name and password (user "gate", password "right")."""
    tool = shutil.which("mosquitto_passwd")
    require(tool is not None, "mosquitto_passwd", "apt-get install mosquitto")
    assert tool is not None
    passwords = tmp_path / "passwords"
    passwords.touch()
    for user, password in (("gate", "right"), ("centre", "centre-pw")):
        subprocess.run([tool, "-b", str(passwords), user, password], check=True,
                       capture_output=True)
    broker = Broker(tmp_path / "broker",
                    listener_options=f"allow_anonymous false\npassword_file {passwords}")
    broker.start()
    return broker


def _sync(tmp_path: Path, broker: Broker, password: str, name: str) -> SyncService:
    password_file = tmp_path / f"{name}.password"
    password_file.write_text(password + "\n")
    settings = broker_settings(broker.url, username="gate", password_file=password_file,
                               keepalive_s=5)
    return SyncService(settings, SITE, GATE, make_outbox(tmp_path / name), queue.SimpleQueue().put,
                       lambda: {"outbox_backlog": 0}, reconnect_min_s=0.05, reconnect_max_s=0.1)


def test_refused_connack_is_not_connected_and_publishes_no_birth(
    locked_broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    centre = Subscriber(locked_broker.url, [STATUS], username="centre", password="centre-pw")
    refusals = threading.Semaphore(0)

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "refused the connection" in record.getMessage():
                refusals.release()

    counter = Count()
    logging.getLogger("agent.sync.service").addHandler(counter)
    wrong = _sync(tmp_path, locked_broker, "wrong", "wrong")
    try:
        wrong.start()
        for _ in range(3):  # refused, backed off, retried: never connected in between
            assert refusals.acquire(timeout=10), "the broker never refused the gate"
            assert not wrong.connected
        assert wrong.connects == 0 and wrong.alive
        assert "Not authorized" in caplog.text
    finally:
        wrong.stop()
        logging.getLogger("agent.sync.service").removeHandler(counter)
    try:
        assert centre.json_on("/status") == []  # no birth, no goodbye: it never was online
        # The same gate with the right password is online at once (the test setup works).
        right = _sync(tmp_path, locked_broker, "right", "right")
        right.start()
        try:
            assert centre.wait_for(lambda m: len(m) > 0)
            assert right.connected and right.connects == 1
            assert [s["online"] for s in centre.json_on("/status")] == [True]
        finally:
            right.stop()
        assert centre.wait_for(lambda m: len(m) > 1)
        last = json.loads(centre.messages[-1][1])
        assert last["online"] is False and last["reason"] == "stopped"
    finally:
        centre.close()
        locked_broker.kill()


def test_gatectl_refused_by_the_broker_is_one_line_exit_1_and_no_thread_left(
    locked_broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli import gatectl

    threads_before = {t.ident for t in threading.enumerate()}
    try:
        code = gatectl.main(["watch", "--broker", locked_broker.url, "--duration", "1s"])
    finally:
        locked_broker.kill()
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused the connection" in err
    leftover = [t.name for t in threading.enumerate()
                if t.ident not in threads_before and t.is_alive()]
    assert leftover == []  # paho's network thread was stopped
