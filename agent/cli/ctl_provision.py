"""``gatectl ca``, ``gatectl provision`` and ``gatectl gate retire``: the installer's
centre-side tools (client CA, per-gate bundles, the broker's ACL and CRL)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from agent.centre.provision import bundle, pki
from agent.centre.provision.ids import parse_target
from agent.cli.common import EXIT_OK
from agent.core.errors import UsageError


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    ca = subparsers.add_parser("ca", help="the district's client CA for broker TLS")
    ca_actions = ca.add_subparsers(dest="ca_command", metavar="ACTION", required=True)
    new = ca_actions.add_parser(
        "new", help="make a client CA folder (key 0600: keep it offline)",
        description="Write DIR/clients-ca.key, clients-ca.pem (the broker's cafile) and "
        "clients-ca.crl (its crlfile). 生成客户端 CA。")
    new.add_argument("--out", required=True, type=Path, metavar="DIR")
    new.set_defaults(func=_ca_new)
    server = ca_actions.add_parser(
        "server", help="issue the broker's certificate from the same CA",
        description="Write DIR/server.pem and DIR/server.key for Mosquitto's certfile/keyfile. "
        "Gates provisioned without --broker-ca trust this CA for the broker.")
    server.add_argument("--ca", required=True, type=Path, metavar="DIR")
    server.add_argument("--host", required=True, help="the host name in the gates' broker URL")
    server.add_argument("--out", required=True, type=Path, metavar="DIR")
    server.set_defaults(func=_ca_server)
    client = ca_actions.add_parser(
        "client", help="issue a centre client certificate (centre-ops, centre-ingest)",
        description="Write DIR/NAME.pem and DIR/NAME.key: the CN is the user name in "
        "mosquitto.acl (centre-ops for gatectl, centre-ingest for gate-centre).")
    client.add_argument("--ca", required=True, type=Path, metavar="DIR")
    client.add_argument("--cn", required=True, choices=["centre-ops", "centre-ingest"])
    client.add_argument("--out", required=True, type=Path, metavar="DIR")
    client.set_defaults(func=_ca_client)

    prov = subparsers.add_parser(
        "provision", help="make one bundle per gate (SITE/GATE or --from gates.csv)",
        description="Write DIR/SITE-GATE/ (copy it to the card's boot partition as "
        "gate-agent/) for each gate, plus DIR/mosquitto.acl and DIR/installer-tokens.csv. "
        "为每个闸机生成配置包。")
    prov.add_argument("target", nargs="?", metavar="SITE/GATE")
    prov.add_argument("--from", dest="csv", type=Path, metavar="CSV",
                      help="gates.csv with header site,gate[,section.key...]")
    prov.add_argument("--ca", required=True, type=Path, metavar="DIR")
    prov.add_argument("--issuers", required=True, type=Path, metavar="DIR",
                      help="issuer public keys (KID.pub) the gates trust")
    prov.add_argument("--ops", required=True, type=Path, metavar="DIR",
                      help="ops public keys (KID.pub) the gates trust")
    prov.add_argument("--broker", required=True, metavar="URL", help="mqtts://HOST[:PORT]")
    prov.add_argument("--broker-ca", type=Path, metavar="FILE",
                      help="CA of the broker's certificate (default: the client CA)")
    prov.add_argument("--revocations", type=Path, metavar="FILE",
                      help="the current signed full revocation list")
    prov.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                      help="a config option for every gate (a CSV column overrides it)")
    prov.add_argument("--out", required=True, type=Path, metavar="DIR")
    prov.set_defaults(func=_provision)

    gate = subparsers.add_parser("gate", help="a provisioned gate's certificate")
    gate_actions = gate.add_subparsers(dest="gate_command", metavar="ACTION", required=True)
    retire = gate_actions.add_parser(
        "retire", help="revoke the gate's client certificates (re-signs the CRL)",
        description="Revoke every certificate this CA issued to SITE/GATE and re-sign "
        "DIR/clients-ca.crl: copy it to the broker's crlfile and reload Mosquitto. "
        "吊销闸机证书。")
    retire.add_argument("target", metavar="SITE/GATE")
    retire.add_argument("--ca", required=True, type=Path, metavar="DIR")
    retire.set_defaults(func=_retire)


def _ca_new(args: argparse.Namespace) -> int:
    ca = pki.new_ca(args.out)
    for name in (pki.CA_KEY, pki.CA_CERT, pki.CA_CRL):
        print(ca.folder / name)
    return EXIT_OK


def _ca_server(args: argparse.Namespace) -> int:
    ca = pki.load_ca(args.ca)
    _refuse_existing(args.out, "server")
    _write_pair(args.out, "server", pki.issue_server(ca, args.host))
    return EXIT_OK


def _ca_client(args: argparse.Namespace) -> int:
    ca = pki.load_ca(args.ca)
    _refuse_existing(args.out, args.cn)
    _write_pair(args.out, args.cn, pki.issue_client(ca, args.cn, None, None))
    return EXIT_OK


def _refuse_existing(folder: Path, stem: str) -> None:
    for path in (folder / f"{stem}.pem", folder / f"{stem}.key"):
        if path.exists():
            raise UsageError(f"{path} already exists: remove it or choose another --out")


def _write_pair(folder: Path, stem: str, issued: pki.Issued) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make {folder}: {exc.strerror}: choose another --out") from None
    key = folder / f"{stem}.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(issued.key_pem)
    (folder / f"{stem}.pem").write_bytes(issued.cert_pem)
    print(folder / f"{stem}.pem")
    print(key)


def _provision(args: argparse.Namespace) -> int:
    if (args.target is None) == (args.csv is None):
        raise UsageError("give one SITE/GATE or --from gates.csv (not both, not neither)")
    defaults = bundle.parse_set(args.set)
    if args.csv is not None:
        specs = bundle.read_csv(args.csv, defaults)
    else:
        site, gate = parse_target(args.target)
        specs = [bundle.GateSpec(site, gate, defaults)]
    inputs = bundle.load_inputs(args.ca, args.issuers, args.ops, args.broker, args.broker_ca,
                                args.revocations)
    made = bundle.provision(specs, inputs, args.out)
    for folder in made:
        print(folder)
    print(args.out / "mosquitto.acl")
    return EXIT_OK


def _retire(args: argparse.Namespace) -> int:
    site, gate = parse_target(args.target)
    ca = pki.load_ca(args.ca)
    serials = pki.retire(ca, site, gate)
    crl = ca.folder / pki.CA_CRL
    if serials:
        print(f"revoked {len(serials)} certificate(s) of {site}/{gate}: {', '.join(serials)}")
    else:
        print(f"{site}/{gate} was already retired")
    print(f"copy {crl} to the broker's crlfile and reload Mosquitto")
    return EXIT_OK
