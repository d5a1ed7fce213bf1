"""From the centre to the gate over a real broker: signed commands and revocation lists.

A small stand-in for the controller (issue 6) takes ``Inbound`` events off the queue
the SyncService fills and applies them with the real verification code and stores.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import gatectl
from agent.core.errors import RevocationListError
from agent.core.events import Inbound
from agent.gate.policy import GateContext, decide
from agent.protocol.command import CommandRefused, make_command, parse_command, sign_command
from agent.protocol.credential import issue_credential
from agent.protocol.keys import load_keyring, load_signing_key, write_keypair
from agent.protocol.revocation import (
    RevocationEntry,
    RevocationList,
    parse_revocation_list,
    sign_revocation_list,
)
from agent.store.replay import ReplayCache
from agent.store.revocations import RevocationStore
from agent.sync.broker import broker_settings
from agent.sync.service import SyncService
from tests.broker import Broker
from tests.sync_support import OpsKeys, Subscriber, make_ops_keys, make_outbox

SITE, GATE = "binhai-0001", "north-1"
BASE = f"gate/v1/{SITE}/{GATE}"


class Gate:
    """Controller stand-in: verifies and applies what the sync delivers."""

    def __init__(self, tmp: Path, broker: Broker, ops: OpsKeys, gate_id: str = GATE) -> None:
        self.ops = ops
        self.gate_id = gate_id
        self.inbound: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.replay = ReplayCache(tmp / "state")
        self.revocations = RevocationStore(tmp / "state")
        self.commands: list[str] = []
        self.lists: list[tuple[str, str]] = []
        self.sync = SyncService(broker_settings(broker.url), SITE, gate_id, make_outbox(tmp / "st"),
                                self.inbound.put, lambda: {}, reconnect_max_s=0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="controller")

    def start(self) -> None:
        self.sync.start()
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.sync.connected:
            assert time.monotonic() < deadline
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sync.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.inbound.get(timeout=0.05)
            except queue.Empty:
                continue
            if msg.kind == "cmd":
                self._command(msg.payload)
            elif msg.kind.startswith("revocations"):
                self._revocations(msg.payload)

    def _command(self, payload: bytes) -> None:
        try:
            cmd = parse_command(payload, self.ops.keyring, SITE, self.gate_id, time.time(),
                                self.replay)
        except CommandRefused as exc:
            self.sync.publish_result(exc.cmd_id or "", False, exc.reason, exc.detail)
            return
        self.replay.remember(cmd.replay_key, cmd.expires_at)
        self.commands.append(cmd.action)
        if cmd.action == "resend":
            self.commands.append(f"{cmd.seq_from}..{cmd.seq_to}")
        self.sync.publish_result(cmd.id, True, "ok")

    def _revocations(self, payload: bytes) -> None:
        try:
            lst = parse_revocation_list(payload, self.ops.keyring, time.time())
            self.revocations.apply(lst)
        except RevocationListError as exc:
            self.lists.append(("refused", str(exc)))
            if exc.gap:
                self.sync.request_resync("gap", self.revocations.version)
            return
        self.lists.append(("applied", str(lst.version)))


@pytest.fixture
def gate(tmp_path: Path, broker: Broker) -> Iterator[Gate]:
    g = Gate(tmp_path, broker, make_ops_keys(tmp_path / "keys"))
    g.start()
    try:
        yield g
    finally:
        g.stop()


def _results(broker: Broker) -> Subscriber:
    return Subscriber(broker.url, [f"{BASE}/cmd/result", f"{BASE}/resync"])


def test_gatectl_open_is_accepted_once_and_mode_reaches_the_gate(
        gate: Gate, broker: Broker, capsys: pytest.CaptureFixture[str]) -> None:
    key = str(gate.ops.key_file)
    assert gatectl.main(["open", f"{SITE}/{GATE}", "--key", key, "--broker", broker.url]) == 0
    assert "accepted" in capsys.readouterr().out
    assert gatectl.main(["mode", f"{SITE}/{GATE}", "lockdown", "--for", "10m", "--key", key,
                         "--broker", broker.url, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True and result["gate"] == GATE
    assert gate.commands == ["open", "mode"]


def test_gatectl_resync_and_resend_reach_the_gate_and_a_bad_range_is_a_usage_error(
        gate: Gate, broker: Broker, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--key", str(gate.ops.key_file), "--broker", broker.url]
    assert gatectl.main(["resync", f"{SITE}/{GATE}", *common]) == 0
    assert gatectl.main(["resend", f"{SITE}/{GATE}", "--from", "7", "--to", "9", *common]) == 0
    assert gate.commands == ["resync", "resend", "7..9"]
    capsys.readouterr()
    assert gatectl.main(["resend", f"{SITE}/{GATE}", "--from", "9", "--to", "7", *common]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gatectl: ") and "\n" not in err and "resend" in err
    assert gate.commands == ["resync", "resend", "7..9"]


def test_a_site_wide_mode_reports_every_gate_that_answers(
        gate: Gate, broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = Gate(tmp_path / "south", broker, gate.ops, gate_id="south-2")
    other.start()
    try:
        assert gatectl.main(["mode", f"{SITE}/*", "lockdown", "--for", "30m", "--wait", "3",
                             "--json", "--key", str(gate.ops.key_file),
                             "--broker", broker.url]) == 0
        results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert sorted(r["gate"] for r in results) == [GATE, "south-2"]
        assert all(r["ok"] is True for r in results)
        assert gate.commands == other.commands == ["mode"]
    finally:
        other.stop()


def test_bad_commands_are_refused_with_their_reason(gate: Gate, broker: Broker,
                                                    tmp_path: Path) -> None:
    results = _results(broker)
    foreign = make_ops_keys(tmp_path / "foreign", kid="ops-1")
    now = time.time()
    good = sign_command(make_command("open", f"{SITE}/{GATE}", now=now), gate.ops.key,
                        gate.ops.kid)
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    variants = {
        "unsigned": (json.dumps({"action": "open", "id": "x"}).encode(), "malformed"),
        "foreign": (sign_command(make_command("open", f"{SITE}/{GATE}", now=now, cmd_id="f1"),
                                 foreign.key, "ops-2"), "unknown_key"),
        "forged": (sign_command(make_command("open", f"{SITE}/{GATE}", now=now, cmd_id="f2"),
                                foreign.key, gate.ops.kid), "bad_signature"),
        "tampered": (tampered, "bad_signature"),
        "expired": (sign_command(make_command("open", f"{SITE}/{GATE}", now=now - 120,
                                              ttl_s=60, cmd_id="e1"),
                                 gate.ops.key, gate.ops.kid), "expired"),
        "wrong_target": (sign_command(make_command("open", f"{SITE}/south-2", now=now,
                                                   cmd_id="w1"),
                                      gate.ops.key, gate.ops.kid), "wrong_target"),
    }
    results.publish(f"{BASE}/cmd", good)
    assert results.wait_for(lambda m: len(m) == 1)
    for payload, _reason in variants.values():
        results.publish(f"{BASE}/cmd", payload)
    results.publish(f"{BASE}/cmd", good)  # replayed
    assert results.wait_for(lambda m: len(m) == 2 + len(variants))
    got = results.json_on("/cmd/result")
    assert got[0]["ok"] is True
    assert [r["reason"] for r in got[1:]] == [r for _, r in variants.values()] + ["replayed"]
    assert all(r["ok"] is False for r in got[1:])
    assert got[-1]["id"] == got[0]["id"]
    assert gate.commands == ["open"]
    results.close()


def test_revocation_list_via_mqtt_revokes_and_bad_lists_change_nothing(
        gate: Gate, broker: Broker, tmp_path: Path) -> None:
    # The courier's credential, issued by a trusted issuer key.
    issuer_dir = tmp_path / "keys" / "issuers"
    key_file, pub = write_keypair(tmp_path / "issuer-private", "iss-1")
    (issuer_dir / "iss-1.pub").write_bytes(pub.read_bytes())
    gate.ops.keyring = load_keyring(issuer_dir, gate.ops.ops_dir)
    text = issue_credential(load_signing_key(key_file), kid="iss-1", sub="courier-7",
                            scope=[f"{SITE}/{GATE}"], not_before=time.time() - 60,
                            ttl_s=3600, now=time.time())
    ctx = GateContext(SITE, GATE, accept_static=True)

    def scan() -> str:
        return str(decide(text, ctx, gate.ops.keyring, gate.revocations, gate.replay,
                          time.time()).reason)

    assert scan() == "ok"
    revoke = RevocationList("full", 5, None, int(time.time()),
                            (RevocationEntry("sub", "courier-7"),))
    signed = tmp_path / "full-5.cose"
    signed.write_bytes(sign_revocation_list(revoke, gate.ops.key, gate.ops.kid))
    assert gatectl.main(["revocations", "publish", str(signed), "--broker", broker.url]) == 0
    deadline = time.monotonic() + 10
    while gate.revocations.version != 5:
        assert time.monotonic() < deadline, gate.lists
        time.sleep(0.02)
    assert scan() == "revoked"

    results = _results(broker)
    foreign = make_ops_keys(tmp_path / "foreign", kid="ops-1")
    empty6 = RevocationList("full", 6, None, int(time.time()), ())
    old = sign_revocation_list(RevocationList("full", 4, None, int(time.time()), ()),
                               gate.ops.key, gate.ops.kid)
    good6 = sign_revocation_list(empty6, gate.ops.key, gate.ops.kid)
    bad = [
        old,  # older version
        good6[:-1] + bytes([good6[-1] ^ 1]),  # tampered
        sign_revocation_list(empty6, foreign.key, gate.ops.kid),  # foreign signer
        sign_revocation_list(RevocationList("delta", 9, 7, int(time.time()), ()),
                             gate.ops.key, gate.ops.kid),  # gap: asks for a resync
    ]
    for payload in bad:
        results.publish("gate/v1/revocations/delta", payload)
    assert results.wait_for(lambda m: any(t.endswith("/resync") for t, _, _ in m))
    deadline = time.monotonic() + 10
    while len(gate.lists) < 1 + len(bad):
        assert time.monotonic() < deadline, gate.lists
        time.sleep(0.02)
    assert [outcome for outcome, _ in gate.lists] == ["applied"] + ["refused"] * len(bad)
    assert gate.revocations.version == 5 and scan() == "revoked"
    resync = results.json_on("/resync")[0]
    assert resync["have_version"] == 5 and resync["gate"] == GATE
    results.close()
