"""gatectl ca / provision / gate retire: bundles a gate can use, refused input changes
nothing, and the ACL checked on a real Mosquitto with TLS."""

from __future__ import annotations

import hashlib
import json
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from paho.mqtt.enums import CallbackAPIVersion

from agent.centre.provision.ids import id_problem
from agent.cli import gatectl
from agent.core.config import load_config
from agent.sync.service import SyncService
from agent.sync.topics import REVOCATIONS_FULL, GateTopics
from tests.broker import Broker, free_port
from tests.provision_support import Centre, make_centre, provision
from tests.sync_support import AckingCentre, CentreStore, Subscriber, backlog, make_outbox


@pytest.fixture
def centre(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Centre:
    return make_centre(tmp_path / "centre", capsys)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def _csv(path: Path, rows: list[str], header: str = "site,gate") -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _issued(centre: Centre) -> str:
    ledger = centre.ca / "issued.jsonl"
    return ledger.read_text() if ledger.exists() else ""


def test_one_hundred_gates_from_a_csv_each_get_a_bundle_valid_for_that_gate(
        centre: Centre, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [f"site-{i // 10:02d},gate-{i % 10},{'false' if i % 2 else 'true'}"
            for i in range(100)]
    gates = _csv(tmp_path / "gates.csv", rows, "site,gate,door.relay_active_high")
    out = tmp_path / "bundles"
    started = time.monotonic()
    assert gatectl.main(["provision", "--from", str(gates), *centre.args(),
                         "--out", str(out)]) == 0
    took = time.monotonic() - started
    capsys.readouterr()
    ca = _cert(centre.ca / "clients-ca.pem")
    bundles = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(bundles) == 100, took
    acl = (out / "mosquitto.acl").read_text()
    for i in range(100):
        site, gate = f"site-{i // 10:02d}", f"gate-{i % 10}"
        folder = out / f"{site}-{gate}"
        config = load_config(folder / "config.toml")
        assert (config.gate.site, config.gate.id) == (site, gate)
        assert config.door.relay_active_high is (i % 2 == 0)
        assert config.mqtt is not None and config.mqtt.url == "mqtts://broker.example:8883"
        cert = _cert(folder / "tls" / "gate.pem")
        cert.verify_directly_issued_by(ca)
        assert _cn(cert) == f"gate-{site}-{gate}"
        key = serialization.load_pem_private_key((folder / "tls/gate.key").read_bytes(), None)
        assert key.public_key() == cert.public_key()
        assert _mode(folder / "tls" / "gate.key") == 0o600
        assert _mode(folder / "installer-token") == 0o600
        assert f"user gate-{site}-{gate}\n" in acl
        sums = (folder / "SHA256SUMS").read_text().splitlines()
        for line in sums:
            digest, name = line.split("  ")
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
        meta = json.loads((folder / "bundle.json").read_text())
        assert meta["serial"] == f"{cert.serial_number:x}"
    tokens = (out / "installer-tokens.csv").read_text().splitlines()
    assert len(tokens) == 101 and _mode(out / "installer-tokens.csv") == 0o600
    assert len({t.split(",")[2] for t in tokens[1:]}) == 100


@pytest.mark.parametrize("gate", ["north/1", "north+1", "north#1", "north*", "north 1",
                                  "north\u200b1", "north\x071", "\u00a0north", ".hidden"])
def test_an_unusable_gate_id_is_refused_before_anything_is_issued(
        centre: Centre, tmp_path: Path, capsys: pytest.CaptureFixture[str], gate: str) -> None:
    gates = _csv(tmp_path / "gates.csv", ["binhai-0001,north-1", f'binhai-0001,"{gate}"'])
    out = tmp_path / "bundles"
    assert gatectl.main(["provision", "--from", str(gates), *centre.args(),
                         "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gatectl: ") and err.count("\n") == 1, err
    assert "gates.csv:3" in err and "gate id" in err
    assert not out.exists() and _issued(centre) == ""


def test_a_slash_in_a_command_line_target_is_refused(
        centre: Centre, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gatectl.main(["provision", "binhai/north/1", *centre.args(),
                         "--out", str(tmp_path / "b")]) == 2
    assert "gate id 'north/1' contains '/'" in capsys.readouterr().err


def test_ids_the_gate_can_use_pass() -> None:
    for good in ("binhai-0001", "north_1", "gate.2", "滨海-1"):
        assert id_problem(good) is None, good


@pytest.mark.parametrize("rows, message", [
    (["binhai,north-1", "binhai,south-2", "binhai,north-1"], "is listed twice"),
    (["a-b,c", "a,b-c"], "gets the same certificate name 'gate-a-b-c'"),
])
def test_duplicate_rows_and_colliding_names_are_refused(
        centre: Centre, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        rows: list[str], message: str) -> None:
    out = tmp_path / "bundles"
    assert gatectl.main(["provision", "--from", str(_csv(tmp_path / "g.csv", rows)),
                         *centre.args(), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists() and _issued(centre) == ""


def test_a_ca_key_that_does_not_match_its_certificate_is_refused(
        centre: Centre, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    assert gatectl.main(["ca", "new", "--out", str(other)]) == 0
    (centre.ca / "clients-ca.key").write_bytes((other / "clients-ca.key").read_bytes())
    capsys.readouterr()
    assert gatectl.main(["provision", "binhai/north-1", *centre.args(),
                         "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "does not match" in err and err.count("\n") == 1, err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("url, message", [("htp://host", "not usable"),
                                          ("mqtt://host:1883", "plain TCP")])
def test_a_broker_url_gates_cannot_use_is_refused(
        centre: Centre, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        url: str, message: str) -> None:
    assert gatectl.main(["provision", "binhai/north-1", *centre.args(url),
                         "--out", str(tmp_path / "b")]) == 2
    assert message in capsys.readouterr().err
    assert _issued(centre) == ""


def test_a_bad_option_column_is_refused_for_its_row(
        centre: Centre, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gates = _csv(tmp_path / "g.csv", ["binhai,north-1,17", "binhai,south-2,99"],
                 "site,gate,door.relay_pin")
    assert gatectl.main(["provision", "--from", str(gates), *centre.args(),
                         "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "g.csv:3" in err and "door.relay_pin" in err, err
    assert _issued(centre) == ""


def test_an_existing_bundle_is_never_overwritten(
        centre: Centre, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = provision(centre, "binhai/north-1", tmp_path / "b")
    before = (first / "tls" / "gate.pem").read_bytes()
    assert gatectl.main(["provision", "binhai/north-1", *centre.args(),
                         "--out", str(tmp_path / "b")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (first / "tls" / "gate.pem").read_bytes() == before


def test_retire_puts_every_certificate_of_the_gate_on_the_crl(
        centre: Centre, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = provision(centre, "binhai/north-1", tmp_path / "b1")
    again = provision(centre, "binhai/north-1", tmp_path / "b2")  # a replacement card
    keep = provision(centre, "binhai/south-2", tmp_path / "b1")
    capsys.readouterr()
    assert gatectl.main(["gate", "retire", "binhai/north-1", "--ca", str(centre.ca)]) == 0
    assert "revoked 2 certificate(s)" in capsys.readouterr().out
    crl = x509.load_pem_x509_crl((centre.ca / "clients-ca.crl").read_bytes())
    assert crl.is_signature_valid(_cert(centre.ca / "clients-ca.pem").public_key())  # type: ignore[arg-type]
    for folder, revoked in ((a, True), (again, True), (keep, False)):
        serial = _cert(folder / "tls" / "gate.pem").serial_number
        assert (crl.get_revoked_certificate_by_serial_number(serial) is not None) is revoked
    assert gatectl.main(["gate", "retire", "binhai/north-1", "--ca", str(centre.ca)]) == 0
    assert "already retired" in capsys.readouterr().out
    assert gatectl.main(["gate", "retire", "binhai/nobody", "--ca", str(centre.ca)]) == 2
    assert "never issued" in capsys.readouterr().err


# ---- the bundles against a real Mosquitto with TLS, its ACL and CRL

SITE = "binhai-0001"
GATES = ("north-1", "south-2", "east-3")


@pytest.fixture
def district(centre: Centre, tmp_path: Path,
             capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[Broker, Path, Path]]:
    """Bundles for three gates and a broker set up from the same CA folder and run."""
    port = free_port()
    out = tmp_path / "bundles"
    gates = _csv(tmp_path / "gates.csv", [f"{SITE},{g}" for g in GATES])
    assert gatectl.main(["provision", "--from", str(gates),
                         *centre.args(f"mqtts://127.0.0.1:{port}"), "--out", str(out)]) == 0
    tls = tmp_path / "broker-tls"
    assert gatectl.main(["ca", "server", "--ca", str(centre.ca), "--host", "127.0.0.1",
                         "--out", str(tls)]) == 0
    for cn in ("centre-ops", "centre-ingest"):
        assert gatectl.main(["ca", "client", "--ca", str(centre.ca), "--cn", cn,
                             "--out", str(tls)]) == 0
    capsys.readouterr()
    (tls / "ca.pem").write_bytes((centre.ca / "clients-ca.pem").read_bytes())
    options = ("per_listener_settings false\n"
               f"certfile {tls}/server.pem\nkeyfile {tls}/server.key\n"
               f"cafile {centre.ca}/clients-ca.pem\ncrlfile {centre.ca}/clients-ca.crl\n"
               "require_certificate true\nuse_identity_as_username true\n"
               "tls_version tlsv1.2\n"
               f"allow_anonymous false\nacl_file {out}/mosquitto.acl\n"
               # as docs/operations.md; with the fixture's "max_inflight_messages 0",
               # Mosquitto 2.0.11 drops a client right after PUBACKing a denied publish
               "max_inflight_messages 100\nmax_queued_messages 10000\n")
    broker = Broker(tmp_path / "broker", port=port, tls=True, listener_options=options)
    broker.start()
    try:
        yield broker, out, tls
    finally:
        broker.kill()


def _context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context


def _gate_context(out: Path, gate: str) -> ssl.SSLContext:
    tls = out / f"{SITE}-{gate}" / "tls"
    return _context(tls / "ca.pem", tls / "gate.pem", tls / "gate.key")


def test_a_gate_started_from_its_bundle_connects_and_delivers_its_events(
        district: tuple[Broker, Path, Path], tmp_path: Path) -> None:
    broker, out, tls = district
    # The centre's ingest identity, acknowledging what it stored (the gate's default ack).
    ingest = AckingCentre(broker.url, GateTopics(SITE, "north-1").events, CentreStore(),
                          tls=_context(tls / "ca.pem", tls / "centre-ingest.pem",
                                       tls / "centre-ingest.key"))
    mqtt = load_config(out / f"{SITE}-north-1" / "config.toml").mqtt
    assert mqtt is not None
    outbox = make_outbox(tmp_path / "outbox")
    for i in range(5):
        outbox.append({"kind": "scan", "granted": True, "reason": "ok", "site": SITE,
                       "gate": "north-1", "sub": f"c{i}", "cti": f"{i:032x}",
                       "method": "camera", "door": "unlocked"})
    sync = SyncService(mqtt, SITE, "north-1", outbox, lambda _m: None,
                       lambda: {"door": "locked"}, reconnect_min_s=0.05, reconnect_max_s=0.2)
    sync.start()
    try:
        assert ingest.wait_for(lambda m: len(m) >= 5)
        deadline = time.monotonic() + 10
        while backlog(outbox) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backlog(outbox) == 0
    finally:
        sync.stop()
        ingest.close()


def test_each_gate_certificate_publishes_and_reads_only_its_own_topics(
        district: tuple[Broker, Path, Path]) -> None:
    broker, out, tls = district
    ops_tls = _context(tls / "ca.pem", tls / "centre-ops.pem", tls / "centre-ops.key")
    ingest = Subscriber(broker.url, ["gate/v1/#"], "ingest",
                        tls=_context(tls / "ca.pem", tls / "centre-ingest.pem",
                                     tls / "centre-ingest.key"))
    ops = Subscriber(broker.url, ["gate/v1/+/+/cmd/result"], "ops", tls=ops_tls)
    lists = Subscriber(broker.url, [REVOCATIONS_FULL], "reader", tls=_gate_context(out, GATES[0]))
    try:
        for gate in GATES:
            me = GateTopics(SITE, gate)
            others = [GateTopics(SITE, g) for g in GATES if g != gate]
            spy = Subscriber(broker.url, [me.cmd, *(o.cmd for o in others)], f"spy-{gate}",
                             tls=_gate_context(out, gate))
            try:
                for other in others:  # all dropped by the ACL (after a PUBACK)
                    spy.publish(other.events, b"forged")
                    spy.publish(other.cmd_result, b"forged")
                    ops.publish(other.cmd, b"for " + other.gate.encode())
                spy.publish(REVOCATIONS_FULL, b"stale list")
                spy.publish(me.cmd_result, b"mine")
                spy.publish(me.events, b"mine")
                ops.publish(me.cmd, b"for me")
                assert ingest.wait_for(lambda m, t=me.events: any(x == t for x, _, _ in m))
                assert ops.wait_for(lambda m, t=me.cmd_result: any(x == t for x, _, _ in m))
                assert spy.wait_for(lambda m, t=me.cmd: any(x == t for x, _, _ in m))
                assert [t for t, _, _ in spy.messages] == [me.cmd]
            finally:
                spy.close()
        ops.publish(REVOCATIONS_FULL, b"the centre's list")
        assert lists.wait_for(lambda m: len(m) >= 1)
        assert [p for _t, p, _ in lists.messages] == [b"the centre's list"]
        assert [p for t, p, _ in ingest.messages if "/events" in t] == [b"mine"] * len(GATES)
        assert [p for _t, p, _ in ops.messages] == [b"mine"] * len(GATES)
    finally:
        for client in (ingest, ops, lists):
            client.close()


def _connects(url: str, context: ssl.SSLContext) -> bool:
    """Whether the broker accepts a connection (CONNACK) with this certificate."""
    host, port = url.split("://")[1].split(":")
    connected = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, reconnect_on_failure=False)
    client.tls_set_context(context)
    client.on_connect = lambda _c, _u, _f, rc, _p: connected.set() if not rc.is_failure else None
    try:
        client.connect(host, int(port))
    except (ssl.SSLError, OSError):
        return False
    client.loop_start()
    try:
        return connected.wait(3)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_retired_gate_is_shut_out_by_the_crl(
        district: tuple[Broker, Path, Path], centre: Centre,
        capsys: pytest.CaptureFixture[str]) -> None:
    broker, out, _tls = district
    assert _connects(broker.url, _gate_context(out, "south-2"))
    assert gatectl.main(["gate", "retire", f"{SITE}/south-2", "--ca", str(centre.ca)]) == 0
    capsys.readouterr()
    broker.restart()  # Mosquitto reads its crlfile when it starts
    assert _connects(broker.url, _gate_context(out, "north-1"))
    assert not _connects(broker.url, _gate_context(out, "south-2"))


def test_the_acl_is_the_one_operations_md_describes() -> None:
    from agent.centre.provision import acl
    from tests.conftest import ROOT

    page = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    start = page.index("`/etc/mosquitto/gate-agent.acl`")
    block = page[page.index("```conf\n", start) + 8:page.index("```", page.index(
        "```conf\n", start) + 8)]
    assert acl.render([("binhai-0001", "north-1")]) == acl.HEADER + block
