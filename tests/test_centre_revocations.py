"""The centre owns the revocation list: gate-centre revoke reaches a real gate's
verification, lists are checked against the gates' trust before publishing, resync
requests are answered, and signed time goes out on request (with the nonce) and
on schedule."""

from __future__ import annotations

import getpass
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.centre.service import CentreService
from agent.cli import gate_centre
from agent.gate.policy import GateContext, decide
from agent.protocol.credential import issue_credential
from agent.protocol.keys import load_keyring, load_signing_key, write_keypair
from agent.protocol.revocation import parse_revocation_list
from agent.protocol.timemsg import parse_time
from agent.sync.topics import REVOCATIONS_FULL, TIME, GateTopics
from tests.broker import Broker
from tests.centre_support import CentreFiles, centre_files
from tests.daemon_support import wait_until
from tests.sync_support import Subscriber
from tests.test_centre_ingest import start_service
from tests.test_sync_inbound import GATE, SITE
from tests.test_sync_inbound import Gate as InboundGate


@pytest.fixture
def files(tmp_path: Path, broker: Broker, store_url: str) -> CentreFiles:
    return centre_files(tmp_path, broker.url, store_url, publish_every_s=0.5)


@pytest.fixture
def service(files: CentreFiles) -> Iterator[CentreService]:
    svc = start_service(files.config)
    try:
        yield svc
    finally:
        svc.stop()


def _cli(files: CentreFiles, *args: str) -> int:
    return gate_centre.main([*args, "--config", str(files.config)])


def test_revoke_denies_the_next_scan_at_a_real_gate_and_a_missed_delta_is_repaired(
        files: CentreFiles, service: CentreService, broker: Broker, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    key_file, pub = write_keypair(tmp_path / "issuer-private", "iss-1")
    issuers = tmp_path / "keys" / "issuers"
    (issuers / "iss-1.pub").write_bytes(pub.read_bytes())
    gate = InboundGate(tmp_path / "gate", broker, files.ops)
    gate.ops.keyring = load_keyring(issuers, files.ops.ops_dir)
    gate.start()
    text = issue_credential(load_signing_key(key_file), kid="iss-1", sub="courier-7",
                            scope=[f"{SITE}/{GATE}"], not_before=time.time() - 60,
                            ttl_s=3600, now=time.time())
    ctx = GateContext(SITE, GATE, accept_static=True)

    def scan() -> str:
        return str(decide(text, ctx, gate.ops.keyring, gate.revocations, gate.replay,
                          time.time()).reason)
    try:
        # A new centre's first, empty list reaches the gate before anyone is revoked.
        assert wait_until(lambda: gate.revocations.version == 1, 10), gate.lists
        assert scan() == "ok"
        assert _cli(files, "revoke", "--sub", "courier-7", "--reason", "phone lost") == 0
        assert "list version 2" in capsys.readouterr().out
        assert wait_until(lambda: gate.revocations.version == 2, 10), gate.lists
        assert scan() == "revoked"
        # Offline while two more changes are made: the retained full list repairs it.
        _close(gate)
        assert _cli(files, "revoke", "--cti", "00ff00ff00ff00ff") == 0
        assert _cli(files, "unrevoke", "--sub", "courier-7") == 0
        gate = InboundGate(tmp_path / "gate", broker, files.ops)
        gate.ops.keyring = load_keyring(issuers, files.ops.ops_dir)
        gate.start()
        assert wait_until(lambda: gate.revocations.version == 4, 10), gate.lists
        assert scan() == "ok"
        capsys.readouterr()
        assert _cli(files, "revocations", "--json") == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["version"] == 4 and summary["entries"] == 1
        assert summary["published_at"] is not None
        assert [(h["version"], h["action"], h["kind"]) for h in summary["history"]] == [
            (4, "unrevoke", "sub"), (3, "revoke", "cti"), (2, "revoke", "sub"),
            (1, "initial", "-")]
        assert summary["history"][-2]["who"] == getpass.getuser()
        assert summary["history"][-2]["reason"] == "phone lost"
    finally:
        _close(gate)


def _close(gate: InboundGate) -> None:
    gate.stop()
    gate.revocations.close()
    gate.replay.close()


def test_a_resync_request_is_answered_with_the_full_list(
        files: CentreFiles, service: CentreService, broker: Broker) -> None:
    assert _cli(files, "revoke", "--sub", "courier-9") == 0
    assert wait_until(lambda: service._full is not None and service._full[0] == 2, 10)
    watcher = Subscriber(broker.url, [REVOCATIONS_FULL])
    assert watcher.wait_for(lambda m: len(m) == 1)  # the retained copy
    watcher.publish(GateTopics(SITE, GATE).resync,
                    json.dumps({"reason": "gap", "have_version": 0}).encode())
    assert watcher.wait_for(lambda m: len(m) == 2)
    lst = parse_revocation_list(watcher.messages[1][1], files.ops.keyring, time.time())
    assert lst.kind == "full" and lst.version == 2
    watcher.close()


def test_a_list_the_gates_would_refuse_is_never_stored_or_published(
        files: CentreFiles, broker: Broker, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    rogue, _ = write_keypair(tmp_path / "rogue", "ops-rogue")
    bad = tmp_path / "bad.toml"
    bad.write_text(files.config.read_text().replace(str(files.ops.key_file), str(rogue)))
    watcher = Subscriber(broker.url, ["gate/v1/revocations/#"])
    assert gate_centre.main(["revoke", "--sub", "c1", "--config", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "revocation list refused" in err and "unknown_key" in err
    assert _cli(files, "revocations", "--json") == 0
    assert json.loads(capsys.readouterr().out)["version"] is None
    assert _cli(files, "revoke", "--sub", "c1") == 0
    assert _cli(files, "revoke", "--sub", "c1") == 1  # already: nothing changes
    assert "already revoked" in capsys.readouterr().err
    assert watcher.wait_for(lambda m: len(m) == 2)  # delta + full of version 1 only
    time.sleep(0.3)
    assert len(watcher.messages) == 2
    assert _cli(files, "unrevoke", "--cti", "zz") == 2
    watcher.close()


def test_signed_time_answers_a_request_with_its_nonce_and_is_broadcast(
        files: CentreFiles, service: CentreService, broker: Broker) -> None:
    topics = GateTopics(SITE, GATE)
    watcher = Subscriber(broker.url, [topics.time, TIME])
    nonce = secrets.token_hex(16)
    watcher.publish(topics.time_request, json.dumps({"nonce": "NOT-HEX"}).encode())
    watcher.publish(topics.time_request, json.dumps({"nonce": nonce, "clock": "untrusted"})
                    .encode())
    assert watcher.wait_for(lambda m: any(t == topics.time for t, _, _ in m))
    answers = [p for t, p, _ in watcher.messages if t == topics.time]
    assert len(answers) == 1
    msg = parse_time(answers[0], files.ops.keyring, time.time())
    assert msg.nonce == nonce and abs(msg.t - time.time()) < 5
    assert watcher.wait_for(lambda m: any(t == TIME for t, _, _ in m))
    broadcast = next(p for t, p, _ in watcher.messages if t == TIME)
    assert parse_time(broadcast, files.ops.keyring, time.time()).nonce is None
    watcher.close()


def test_a_restarted_broker_gets_the_newest_list_back_even_one_this_process_did_not_make(
        tmp_path: Path, broker: Broker, store_url: str) -> None:
    files = centre_files(tmp_path, broker.url, store_url, sweep_every_s=600)
    assert _cli(files, "revoke", "--sub", "c1") == 0  # v1, before the service starts
    svc = start_service(files.config)
    try:
        assert _cli(files, "revoke", "--sub", "c2") == 0  # v2, made by the CLI
        broker.kill()  # no persistence: the retained list is gone with it
        broker.start()
        assert wait_until(lambda: svc.link.connects >= 2, 20)
        watcher = Subscriber(broker.url, [REVOCATIONS_FULL])
        assert watcher.wait_for(lambda m: len(m) == 1)
        lst = parse_revocation_list(watcher.messages[0][1], files.ops.keyring, time.time())
        assert lst.version == 2 and watcher.messages[0][2] is True
        watcher.close()
    finally:
        svc.stop()
