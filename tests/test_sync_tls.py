"""TLS with per-gate client certificates and the ACL, set up exactly as docs/operations.md says.

The Mosquitto config, the ACL file and the gate's ``[mqtt]`` block are read from
docs/operations.md (only paths, the port and the host are replaced), so these tests fail
when the page stops describing a setup that works. Certificates are made at run time
with the page's key types: an Ed25519 client CA, P-256 client keys, a P-256 server CA.

Mosquitto PUBACKs a publish its ACL denies and grants any subscription: a denial shows
only in what the other side receives. Each "was not delivered" assertion is therefore
made after a later message from the same sender has arrived (Mosquitto keeps order).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import queue
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from agent.cli import gatectl
from agent.core.config import MqttSection, load_config
from agent.core.events import Inbound
from agent.protocol.command import CommandRefused, parse_command
from agent.runtime.check import check_broker
from agent.runtime.checklist import CheckOptions
from agent.store.replay import ReplayCache
from agent.sync.service import SyncService
from agent.sync.topics import REVOCATIONS_FULL, GateTopics
from tests.broker import Broker
from tests.conftest import ROOT, require
from tests.daemon_support import wait_until
from tests.sync_support import (
    AckingCentre,
    CentreStore,
    OpsKeys,
    Subscriber,
    backlog,
    make_ops_keys,
    make_outbox,
)

DOCS = ROOT / "docs" / "operations.md"
SITE = "binhai-0001"
A, B = "north-1", "south-2"  # A is the gate the page's ACL names; B's block is derived
A_TOPICS, B_TOPICS = GateTopics(SITE, A), GateTopics(SITE, B)

CaKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


# ---- what the page says


def docs_block(marker: str, lang: str) -> str:
    """The first ```lang block after ``marker`` in docs/operations.md."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.find(marker)
    assert start >= 0, f"docs/operations.md no longer contains {marker!r}"
    match = re.compile(rf"```{lang}\n(.*?)```", re.S).search(text, start)
    assert match, f"no ```{lang} block after {marker!r} in docs/operations.md"
    return match.group(1)


def docs_mosquitto_conf(tls_dir: Path, acl_file: Path) -> str:
    """The page's gate-agent.conf, minus its listener line (the fixture binds a free port)."""
    conf = docs_block("`/etc/mosquitto/conf.d/gate-agent.conf`", "conf")
    assert "listener 8883\n" in conf
    return (conf.replace("listener 8883\n", "")
            .replace("/etc/mosquitto/tls/", f"{tls_dir}/")
            .replace("/etc/mosquitto/gate-agent.acl", str(acl_file)))


def docs_acl() -> str:
    """The page's ACL plus gate B's block, made the way provisioning appends one."""
    acl = docs_block("`/etc/mosquitto/gate-agent.acl`", "conf")
    per_gate = acl[acl.index("# one block per gate"):]
    assert f"user gate-{SITE}-{A}" in per_gate
    return acl + "\n" + per_gate.replace(A, B)


# ---- certificates (the page's openssl commands, done with cryptography)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    cert: x509.Certificate
    key: CaKey
    pem: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _sign(builder: x509.CertificateBuilder, key: CaKey) -> x509.Certificate:
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, digest)


def _builder(subject: str, issuer: x509.Name, public: Any, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days)))


def _write_key(path: Path, key: CaKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def make_ca(folder: Path, stem: str, cn: str, key: CaKey) -> Authority:
    cert = _sign(_builder(cn, _name(cn), key.public_key(), 3650)
                 .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                 .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                              False, False), critical=True)
                 .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                critical=False), key)
    pem = folder / f"{stem}.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Authority(cert, key, pem)


def issue(ca: Authority, folder: Path, stem: str, cn: str,
          san: list[x509.GeneralName] | None = None) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (_builder(cn, ca.cert.subject, key.public_key(), 825)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.key.public_key()), critical=False))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = _sign(builder, ca.key)
    issued = Issued(folder / f"{stem}.pem", folder / f"{stem}.key")
    issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(issued.key, key)
    return issued


@dataclass(frozen=True)
class Pki:
    folder: Path
    server_ca: Authority  # ca.pem: what gates and gatectl trust
    clients_ca: Authority  # clients-ca.pem: what the broker trusts
    foreign_ca: Authority  # someone else's CA
    clients: dict[str, Issued]  # by CN
    foreign_gate: Issued  # gate A's CN, from the foreign CA

    def context(self, cn: str | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.server_ca.pem))
        if cn is not None:
            context.load_cert_chain(str(self.clients[cn].cert), str(self.clients[cn].key))
        return context

    def tls_args(self, cn: str) -> list[str]:
        """gatectl's TLS options as the page gives them (--ca, --cert, --tls-key)."""
        client = self.clients[cn]
        return ["--ca", str(self.server_ca.pem), "--cert", str(client.cert),
                "--tls-key", str(client.key)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("tls")
    server_ca = make_ca(folder, "ca", "gate-agent server CA",
                        ec.generate_private_key(ec.SECP256R1()))
    clients_ca = make_ca(folder, "clients-ca", "gate-agent client CA",
                         ed25519.Ed25519PrivateKey.generate())
    foreign_ca = make_ca(folder, "foreign-ca", "gate-agent client CA",
                         ed25519.Ed25519PrivateKey.generate())
    issue(server_ca, folder, "server", "localhost",
          [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    names = [f"gate-{SITE}-{A}", f"gate-{SITE}-{B}", "centre-ingest", "centre-ops"]
    clients = {cn: issue(clients_ca, folder, cn, cn) for cn in names}
    foreign = issue(foreign_ca, folder, "foreign-gate", f"gate-{SITE}-{A}")
    return Pki(folder, server_ca, clients_ca, foreign_ca, clients, foreign)


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Broker]:
    """Mosquitto configured with the page's gate-agent.conf and ACL, on a free port."""
    acl = tmp_path / "gate-agent.acl"
    acl.write_text(docs_acl(), encoding="utf-8")
    broker = Broker(tmp_path / "broker", tls=True,
                    listener_options=docs_mosquitto_conf(pki.folder, acl))
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


# ---- a gate configured from the page's [mqtt] block


def gate_mqtt(folder: Path, broker: Broker | str, ca: Path, client: Issued | None,
              ack: str = "puback") -> MqttSection:
    """Load a gate config whose ``[mqtt]`` is the page's, with this broker's URL."""
    tls = folder / "tls"
    tls.mkdir(parents=True)
    (tls / "ca.pem").write_bytes(ca.read_bytes())
    block = docs_block("## Gate side", "toml")
    url = broker if isinstance(broker, str) else broker.url
    block = re.sub(r'^url = .*$', f'url = "{url}"', block, count=1, flags=re.M)
    block = re.sub(r'^ack = .*$', f'ack = "{ack}"', block, count=1, flags=re.M)
    if client is None:
        block = re.sub(r"^(cert_file|key_file) = .*$", "", block, flags=re.M)
    else:
        (tls / "gate.pem").write_bytes(client.cert.read_bytes())
        (tls / "gate.key").write_bytes(client.key.read_bytes())
    for sub in ("issuers", "ops"):
        (folder / sub).mkdir()
    config = folder / "config.toml"
    config.write_text(f'[gate]\nsite = "{SITE}"\nid = "x"\n\n'
                      '[trust]\nkeys_dir = "issuers"\nops_keys_dir = "ops"\n\n'
                      f"{block}", encoding="utf-8")
    mqtt = load_config(config).mqtt
    assert mqtt is not None and mqtt.url.startswith("mqtts://")
    return mqtt


class TlsGate:
    """A SyncService plus a controller stand-in that verifies commands and answers them."""

    def __init__(self, folder: Path, mqtt: MqttSection, gate: str,
                 ops: OpsKeys | None = None) -> None:
        self.inbound: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.received: list[Inbound] = []
        self.commands: list[str] = []
        self.ops = ops
        self.gate = gate
        self.replay = ReplayCache(folder / "state")
        self.outbox = make_outbox(folder / "outbox")
        self.sync = SyncService(mqtt, SITE, gate, self.outbox, self.inbound.put,
                                lambda: {"door": "locked"}, reconnect_min_s=0.05,
                                reconnect_max_s=0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"controller-{gate}")

    def start(self, *, connected: bool = True) -> None:
        self.sync.start()
        self._thread.start()
        if connected:
            assert wait_until(lambda: self.sync.connected), f"gate {self.gate} did not connect"

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.sync.stop()

    def kinds(self) -> list[str]:
        return [m.kind for m in list(self.received)]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.inbound.get(timeout=0.05)
            except queue.Empty:
                continue
            if msg.kind == "connected":  # the link's own signal, not a broker message
                continue
            self.received.append(msg)
            if msg.kind == "cmd" and self.ops is not None:
                try:
                    cmd = parse_command(msg.payload, self.ops.keyring, SITE, self.gate,
                                        time.time(), self.replay)
                except CommandRefused as exc:
                    self.sync.publish_result(exc.cmd_id or "", False, exc.reason, exc.detail)
                    continue
                self.replay.remember(cmd.replay_key, cmd.expires_at)
                self.commands.append(cmd.action)
                self.sync.publish_result(cmd.id, True, "ok")


@pytest.fixture
def gates() -> Iterator[list[TlsGate]]:
    """Gates started by a test, always stopped afterwards."""
    started: list[TlsGate] = []
    yield started
    for gate in started:
        gate.stop()


def _event(i: int, gate: str) -> dict[str, object]:
    return {"kind": "scan", "granted": True, "reason": "ok", "sub": f"c{i}",
            "cti": f"{i:032x}", "method": "camera", "door": "unlocked",
            "site": SITE, "gate": gate}


# ---- 1. TLS with per-device client certificates


@pytest.mark.parametrize("ack", ["puback", "centre"])
def test_a_gate_with_its_certificate_connects_reports_status_and_drains_its_outbox(
        tls_broker: Broker, pki: Pki, tmp_path: Path, gates: list[TlsGate], ack: str) -> None:
    mqtt = gate_mqtt(tmp_path / "gate", tls_broker, pki.server_ca.pem,
                     pki.clients[f"gate-{SITE}-{A}"], ack)
    ops = Subscriber(tls_broker.url, [A_TOPICS.status], "ops",
                     tls=pki.context("centre-ops"))
    if ack == "centre":
        ingest: Subscriber = AckingCentre(tls_broker.url, A_TOPICS.events, CentreStore(),
                                          tls=pki.context("centre-ingest"))
    else:
        ingest = Subscriber(tls_broker.url, ["gate/v1/+/+/events"], "ingest",
                            tls=pki.context("centre-ingest"))
    gate = TlsGate(tmp_path / "a", mqtt, A)
    ids = [gate.outbox.append(_event(i, A)).id for i in range(40)]
    gates.append(gate)
    try:
        gate.start()
        assert ingest.wait_for(lambda m: len(m) >= len(ids))
        assert [e["id"] for e in ingest.json_on("/events")] == ids
        assert wait_until(lambda: backlog(gate.outbox) == 0)
        assert ops.wait_for(lambda m: any(p for _, p, _ in m))
        status = ops.json_on("/status")[-1]
        assert status["online"] is True and status["door"] == "locked"
        gate.stop()  # a clean stop leaves a retained offline status behind
        assert ops.wait_for(lambda _m: any(
            not s["online"] for s in ops.json_on("/status")))
        assert gate.sync.connects == 1
    finally:
        ops.close()
        ingest.close()


def test_certificates_made_with_the_pages_openssl_commands_work(
        tmp_path: Path, gates: list[TlsGate]) -> None:
    tool = shutil.which("openssl")
    require(tool is not None, "openssl", "apt-get install openssl")
    tls = tmp_path / "tls"
    tls.mkdir()
    section = DOCS.read_text(encoding="utf-8").split("## Per-gate certificates")[1]
    scripts = re.findall(r"```sh\n(.*?)```", section.split("\n## ")[0], re.S)
    assert len(scripts) == 2, "expected the client CA and the server certificate commands"
    for script in scripts:  # the broker is reached as localhost here
        subprocess.run(["bash", "-euc", script.replace("mqtt.centre.example", "localhost")],
                       cwd=tls, check=True, capture_output=True)
    acl = tmp_path / "gate-agent.acl"
    acl.write_text(docs_acl(), encoding="utf-8")
    broker = Broker(tmp_path / "broker", tls=True,
                    listener_options=docs_mosquitto_conf(tls, acl))
    broker.start()
    try:
        url = broker.url.replace("127.0.0.1", "localhost")
        mqtt = gate_mqtt(tmp_path / "gate", url, tls / "ca.pem", Issued(tls / "gate.pem",
                                                                       tls / "gate.key"))
        gate = TlsGate(tmp_path / "a", mqtt, A)
        gate.outbox.append(_event(1, A))
        gates.append(gate)
        gate.start()
        assert wait_until(lambda: backlog(gate.outbox) == 0)
    finally:
        broker.kill()


def _connection_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in list(caplog.records)
            if r.getMessage().startswith("MQTT not connected")]


@pytest.mark.parametrize("case", ["client cert from another CA", "no client cert",
                                  "broker cert from a CA the gate does not trust"])
def test_a_gate_the_broker_or_the_gate_does_not_trust_never_counts_as_connected(
        tls_broker: Broker, pki: Pki, tmp_path: Path, gates: list[TlsGate],
        caplog: pytest.LogCaptureFixture, case: str) -> None:
    client: Issued | None = {
        "client cert from another CA": pki.foreign_gate,
        "no client cert": None,
        "broker cert from a CA the gate does not trust": pki.clients[f"gate-{SITE}-{A}"],
    }[case]
    ca = pki.foreign_ca.pem if case.startswith("broker") else pki.server_ca.pem
    mqtt = gate_mqtt(tmp_path / "gate", tls_broker, ca, client)
    ops = Subscriber(tls_broker.url, [A_TOPICS.status], "ops", tls=pki.context("centre-ops"))
    gate = TlsGate(tmp_path / "a", mqtt, A)
    gate.outbox.append(_event(1, A))
    gates.append(gate)
    caplog.set_level(logging.WARNING, logger="agent.sync.service")
    try:
        gate.start(connected=False)
        assert wait_until(lambda: len(_connection_failures(caplog)) >= 3), \
            "the gate did not retry"
        assert gate.sync.connects == 0 and not gate.sync.connected
        assert backlog(gate.outbox) == 1  # nothing left the gate
        # Only now is the gate stopped: it never sent a status the centre could see.
        gate.stop()
        assert ops.json_on("/status") == []
        failure = _connection_failures(caplog)[0]
        assert "certificate" in failure.lower() or "tls" in failure.lower(), failure
    finally:
        ops.close()


@pytest.mark.parametrize("case", ["its own cert", "client cert from another CA"])
def test_check_meets_the_broker_through_the_daemons_link_and_its_certificate_hint(
        tls_broker: Broker, pki: Pki, tmp_path: Path, case: str) -> None:
    client = pki.clients[f"gate-{SITE}-{A}"] if case == "its own cert" else pki.foreign_gate
    gate_mqtt(tmp_path / "gate", tls_broker, pki.server_ca.pem, client)
    config = load_config(tmp_path / "gate" / "config.toml")
    result = check_broker(config, CheckOptions(broker_timeout_s=8.0))
    if case == "its own cert":
        assert result.status == "pass" and "connected (TLS)" in result.detail, result
        return
    assert result.status == "fail"
    # The daemon's own words for a broker that hangs up on the client certificate.
    assert "closed before CONNACK" in result.detail, result
    assert "mqtt.cert_file and key_file are this gate's" in result.detail, result


@pytest.mark.parametrize("case", ["client cert from another CA", "no client cert"])
def test_gatectl_without_a_trusted_certificate_is_refused_in_one_line(
        tls_broker: Broker, pki: Pki, capsys: pytest.CaptureFixture[str], case: str) -> None:
    args = ["watch", "--broker", tls_broker.url, "--ca", str(pki.server_ca.pem),
            "--duration", "1s"]
    if case.startswith("client"):
        args += ["--cert", str(pki.foreign_gate.cert), "--tls-key", str(pki.foreign_gate.key)]
    assert gatectl.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("gatectl: ") and err.count("\n") == 1, err


def test_gatectl_watch_open_and_revocations_publish_work_over_tls(
        tls_broker: Broker, pki: Pki, tmp_path: Path, gates: list[TlsGate],
        capsys: pytest.CaptureFixture[str]) -> None:
    ops_keys = make_ops_keys(tmp_path / "keys")
    mqtt = gate_mqtt(tmp_path / "gate", tls_broker, pki.server_ca.pem,
                     pki.clients[f"gate-{SITE}-{A}"])
    gate = TlsGate(tmp_path / "a", mqtt, A, ops_keys)
    gates.append(gate)
    gate.start()
    tls = ["--broker", tls_broker.url, *pki.tls_args("centre-ops")]

    assert gatectl.main(["watch", SITE, "--json", "--count", "1", "--duration", "10s",
                         *tls]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["type"] == "status" and line["gate"] == A and line["online"] is True

    # Another gate's certificate may not command: the broker PUBACKs and drops it.
    as_b = ["--broker", tls_broker.url, *pki.tls_args(f"gate-{SITE}-{B}")]
    assert gatectl.main(["open", f"{SITE}/{A}", "--key", str(ops_keys.key_file), "--wait", "1",
                         *as_b]) == 1
    assert "no answer from" in capsys.readouterr().err
    assert gatectl.main(["open", f"{SITE}/{A}", "--key", str(ops_keys.key_file), *tls]) == 0
    assert f"accepted by {SITE}/{A}" in capsys.readouterr().out
    assert gate.commands == ["open"]  # the ops one only

    full = tmp_path / "full.cose"
    assert gatectl.main(["revocations", "full", "--key", str(ops_keys.key_file),
                         "--version", "3", "--cti", "ab" * 16, "--out", str(full)]) == 0
    stale = tmp_path / "stale.cose"
    assert gatectl.main(["revocations", "full", "--key", str(ops_keys.key_file),
                         "--version", "2", "--out", str(stale)]) == 0
    # A gate's certificate may not publish lists. gatectl cannot tell: the broker PUBACKs.
    assert gatectl.main(["revocations", "publish", str(stale), *as_b]) == 0
    assert gatectl.main(["revocations", "publish", str(full), *tls]) == 0
    assert "version 3" in capsys.readouterr().out
    assert wait_until(lambda: "revocations_full" in gate.kinds())
    lists = [m.payload for m in list(gate.received) if m.kind == "revocations_full"]
    assert lists == [full.read_bytes()]


def test_gatectl_watch_over_tls_shows_a_gate_asking_for_a_full_list(
        tls_broker: Broker, pki: Pki, tmp_path: Path, gates: list[TlsGate],
        capsys: pytest.CaptureFixture[str]) -> None:
    mqtt = gate_mqtt(tmp_path / "gate", tls_broker, pki.server_ca.pem,
                     pki.clients[f"gate-{SITE}-{A}"])
    gate = TlsGate(tmp_path / "a", mqtt, A)
    gates.append(gate)
    gate.start()
    codes: list[int] = []
    watcher = threading.Thread(target=lambda: codes.append(gatectl.main(
        ["watch", f"{SITE}/{A}", "--count", "2", "--duration", "15s", "--broker",
         tls_broker.url, *pki.tls_args("centre-ops")])))
    watcher.start()
    while watcher.is_alive():  # not retained: repeat until watch has seen one
        gate.sync.request_resync("delta base 4 does not follow version 3", 3)
        watcher.join(0.2)
    assert codes == [0]
    out = capsys.readouterr().out
    assert f"{SITE}/{A} status online" in out
    assert f"{SITE}/{A} asks for a full revocation list" in out


# ---- 2. the ACL: a gate's identity reaches only its own topics


def test_a_gate_reads_and_writes_only_its_own_topics(
        tls_broker: Broker, pki: Pki, tmp_path: Path, gates: list[TlsGate]) -> None:
    gate_b = TlsGate(tmp_path / "b", gate_mqtt(tmp_path / "gate-b", tls_broker,
                                               pki.server_ca.pem,
                                               pki.clients[f"gate-{SITE}-{B}"]), B)
    gates.append(gate_b)
    gate_b.start()
    url = tls_broker.url
    ops = Subscriber(url, [f"gate/v1/{SITE}/+/cmd/result"], "ops", tls=pki.context("centre-ops"))
    ingest = Subscriber(url, ["gate/v1/+/+/events", "gate/v1/+/+/status"], "ingest",
                        tls=pki.context("centre-ingest"))
    # Gate A's certificate, trying to read everything (another client id than A's own).
    spy = Subscriber(url, [A_TOPICS.cmd, B_TOPICS.cmd, "gate/v1/+/+/events",
                           "gate/v1/+/+/status", B_TOPICS.events_ack],
                     f"gate-{SITE}-{A}-spy", tls=pki.context(f"gate-{SITE}-{A}"))
    try:
        ops.publish(B_TOPICS.cmd, b"for-b")
        ops.publish(A_TOPICS.cmd, b"for-a")
        assert spy.wait_for(lambda m: any(t == A_TOPICS.cmd for t, _, _ in m))
        assert wait_until(lambda: b"for-b" in [m.payload for m in list(gate_b.received)])
        assert spy.messages == [(A_TOPICS.cmd, b"for-a", False)]  # not B's cmd, status ...

        # Writing where it may not: PUBACKed, then dropped.
        spy.publish(B_TOPICS.events, b'{"seq": 1, "forged": true}')
        spy.publish(B_TOPICS.status, b'{"online": false}', retain=True)
        spy.publish(REVOCATIONS_FULL, b"stale list", retain=True)
        spy.publish(B_TOPICS.cmd, b"self-made command")
        spy.publish(A_TOPICS.events, b'{"seq": 1}')  # its own: delivered
        assert ingest.wait_for(lambda m: any(t == A_TOPICS.events for t, _, _ in m))
        assert [t for t, _, _ in ingest.messages if t.startswith(B_TOPICS.base)] \
            == [B_TOPICS.status]  # B's own retained birth status only
        assert ingest.json_on(B_TOPICS.status)[0]["online"] is True
        ops.publish(B_TOPICS.cmd, b"after")
        assert wait_until(lambda: b"after" in [m.payload for m in list(gate_b.received)])
        assert [m.payload for m in list(gate_b.received)] == [b"for-b", b"after"]
    finally:
        for client in (spy, ingest, ops):
            client.close()


def test_a_gates_last_will_reaches_the_centre_only_on_its_own_status_topic(
        tls_broker: Broker, pki: Pki) -> None:
    ingest = Subscriber(tls_broker.url, ["gate/v1/+/+/status"], "ingest",
                        tls=pki.context("centre-ingest"))
    try:
        for topic in (B_TOPICS.status, A_TOPICS.status):  # A's identity: B's topic, then its own
            _drop_with_will(tls_broker, pki.context(f"gate-{SITE}-{A}"), topic)
        assert ingest.wait_for(lambda m: len(m) >= 1)
        assert ingest.messages == [(A_TOPICS.status, b'{"online": false}', False)]
    finally:
        ingest.close()


def _drop_with_will(broker: Broker, context: ssl.SSLContext, will_topic: str) -> None:
    """Connect with a last will, then lose the connection without DISCONNECT."""
    connected = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, reconnect_on_failure=False,
                         client_id="will-" + will_topic.replace("/", "-"))
    client.tls_set_context(context)
    client.will_set(will_topic, b'{"online": false}', qos=1)
    client.on_connect = lambda *a: connected.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert connected.wait(10)
        sock = client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
    finally:
        client.loop_stop()
