"""Fresh time over a real broker: the daemon asks with its own nonce as soon as the broker
answers, and only the centre's answer carrying that nonce sets its clock."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest

from agent.core.config import config_from_mapping
from agent.demo.kit import OPS_KID, make_kit
from agent.gate.timekeeper import ClockState
from agent.protocol.timemsg import is_nonce, sign_time
from agent.runtime.daemon import Daemon, DaemonOptions
from agent.sync.topics import GateTopics
from tests.broker import Broker
from tests.daemon_support import install_list, wait_until
from tests.sync_support import Subscriber

pytestmark = pytest.mark.slow


def test_untrusted_gate_asks_for_time_and_takes_only_the_answer_to_its_nonce(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.gate.centre_handlers")
    kit = make_kit(tmp_path / "kit")
    install_list(kit, tmp_path / "state", kit.revocation_list(1, time.time(), ()))
    raw = kit.config(tmp_path / "state")
    raw["mqtt"] = {"url": broker.url, "keepalive_s": 5, "ack": "puback"}
    config = config_from_mapping(raw, base_dir=tmp_path)
    topics = GateTopics(kit.site, kit.gate)
    subscriber = Subscriber(broker.url, [topics.time_request])
    daemon = Daemon(config, DaemonOptions(pins="mock", mqtt="config",
                                          clock_probe=lambda: False))
    stop = threading.Event()
    daemon.open()
    runner = threading.Thread(target=daemon.serve, args=(stop,), daemon=True)
    try:
        daemon.start()
        runner.start()
        assert subscriber.wait_for(lambda msgs: bool(msgs), 20), "no time request"
        request = json.loads(subscriber.messages[0][1])
        assert is_nonce(request["nonce"]) and request["clock"] == "untrusted"
        controller = daemon.controller
        assert controller is not None
        t = time.time()
        # A broadcast (a replay, for all the gate knows) and a stray nonce do not set it.
        subscriber.publish("gate/v1/time", sign_time(t, kit.ops, OPS_KID))
        subscriber.publish(topics.time, sign_time(t, kit.ops, OPS_KID, nonce="0" * 32))
        subscriber.publish(topics.time, sign_time(t, kit.ops, OPS_KID,
                                                  nonce=request["nonce"]))
        assert wait_until(lambda: controller.status()["clock"]["clock"] == ClockState.CENTRE,
                          10)
        outcomes = [r.getMessage().rsplit(": ", 1)[-1] for r in caplog.records
                    if r.getMessage().startswith("centre time message")]
        assert outcomes == ["needs_nonce", "unknown_nonce", "applied"]
    finally:
        stop.set()
        runner.join(10)
        daemon.shutdown()
        subscriber.close()
