"""The district's client CA: gate certificates, the broker's certificate and the CRL.

A CA folder (``gatectl ca new --out DIR``) holds ``clients-ca.key`` (Ed25519, PKCS#8,
0600: keep it offline), ``clients-ca.pem`` (the broker's ``cafile``), ``clients-ca.crl``
(the broker's ``crlfile``, re-signed by ``gatectl gate retire``), ``issued.jsonl`` (one
line per certificate issued: serial, CN, site, gate) and ``revoked.jsonl``. Gate keys are
P-256 (what every TLS stack on a Pi speaks); everything X.509 goes through
``cryptography``.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.core.errors import KeyFileError, UsageError

CA_KEY, CA_CERT, CA_CRL = "clients-ca.key", "clients-ca.pem", "clients-ca.crl"
ISSUED, REVOKED = "issued.jsonl", "revoked.jsonl"
CA_DAYS, LEAF_DAYS = 3650, 825
# The CRL's nextUpdate: OpenSSL (Mosquitto) refuses every client once a CRL expires, so
# it is set as far out as the CA itself; a retire re-signs it at once.
CRL_DAYS = CA_DAYS


@dataclass(frozen=True)
class Ca:
    folder: Path
    cert: x509.Certificate
    key: ed25519.Ed25519PrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes
    serial: int
    row: dict[str, Any]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def new_ca(folder: Path, name: str = "gate-agent client CA") -> Ca:
    """Make a CA folder; refuses to touch one that already holds a CA."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file: give a new folder for --out")
    existing = [p.name for p in (folder / CA_KEY, folder / CA_CERT) if p.exists()]
    if existing:
        raise UsageError(
            f"{folder} already holds a CA ({', '.join(existing)}): keep it, or choose "
            "another --out (a new CA means new certificates for every gate)"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make {folder}: {exc.strerror}: choose another --out") from None
    key = ed25519.Ed25519PrivateKey.generate()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name)).issuer_name(_name(name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                     False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, None)
    )
    _write_private(folder / CA_KEY, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (folder / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca = Ca(folder, cert, key)
    write_crl(ca)
    return ca


def load_ca(folder: Path) -> Ca:
    """The CA of a folder; KeyFileError when a file is missing, unsafe or does not match."""
    key_path, cert_path = folder / CA_KEY, folder / CA_CERT
    for path in (key_path, cert_path):
        if not path.is_file():
            raise KeyFileError(f"{path} does not exist: give the folder gatectl ca new made")
    if os.name == "posix" and key_path.stat().st_mode & 0o077:
        raise KeyFileError(f"{key_path}: CA key is readable by others: run chmod 600 {key_path}")
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(
            f"{folder}: {CA_CERT} or {CA_KEY} is not a PEM certificate / unencrypted key"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"{key_path}: not an Ed25519 key (gatectl ca new makes one)")
    mine = key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)
    theirs = cert.public_key()
    if not isinstance(theirs, ed25519.Ed25519PublicKey) or theirs.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw) != mine:
        raise KeyFileError(
            f"{key_path} does not match {cert_path}: the key and certificate are from "
            "different CAs; restore the pair gatectl ca new wrote"
        )
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise KeyFileError(f"{cert_path} is not a CA certificate")
    except x509.ExtensionNotFound:
        raise KeyFileError(f"{cert_path} is not a CA certificate") from None
    return Ca(folder, cert, key)


def _leaf(ca: Ca, cn: str, public: Any, days: int, usage: x509.ObjectIdentifier,
          san: list[x509.GeneralName] | None = None) -> x509.Certificate:
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca.cert.subject)
        .public_key(public).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(min(now + datetime.timedelta(days=days), ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, True, False, False, False,
                                     False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.key.public_key()), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(ca.key, None)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def issue_client(ca: Ca, cn: str, site: str | None, gate: str | None,
                 days: int = LEAF_DAYS, *, record: bool = True) -> Issued:
    """A client certificate and key: a gate's (CN = its MQTT client id) or, with no site
    and gate, a centre service's or staff member's (CN = its ACL user name).

    ``record=False``: the caller writes ``ledger_row(...)`` to the ledger itself (a
    provisioning run records all its certificates with one fsync, before any bundle
    becomes visible)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf(ca, cn, key.public_key(), days, ExtendedKeyUsageOID.CLIENT_AUTH)
    issued = Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key),
                    cert.serial_number, ledger_row(cert, cn, site, gate))
    if record:
        record_issued(ca, [issued.row])
    return issued


def ledger_row(cert: x509.Certificate, cn: str, site: str | None,
               gate: str | None) -> dict[str, Any]:
    return {"serial": f"{cert.serial_number:x}", "cn": cn, "site": site, "gate": gate,
            "not_after": cert.not_valid_after_utc.isoformat()}


def issue_server(ca: Ca, host: str, days: int = LEAF_DAYS) -> Issued:
    """The broker's certificate (serverAuth, SAN = host), for a district whose gates
    trust this CA for the broker too."""
    import ipaddress

    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf(ca, host, key.public_key(), days, ExtendedKeyUsageOID.SERVER_AUTH, [san])
    row = ledger_row(cert, host, None, None)
    record_issued(ca, [row])
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key),
                  cert.serial_number, row)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise KeyFileError(f"{path}:{number}: not a JSON line; restore it from a backup") \
                from None
        if not isinstance(row, dict):
            raise KeyFileError(f"{path}:{number}: not a JSON object")
        rows.append(row)
    return rows


def issued(ca: Ca) -> list[dict[str, Any]]:
    return _read_lines(ca.folder / ISSUED)


def revoked(ca: Ca) -> list[dict[str, Any]]:
    return _read_lines(ca.folder / REVOKED)


def record_issued(ca: Ca, rows: Iterable[dict[str, Any]]) -> None:
    with (ca.folder / ISSUED).open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def retire(ca: Ca, site: str, gate: str) -> list[str]:
    """Revoke every certificate issued to the gate; returns their serials (hex)."""
    done = {row.get("serial") for row in revoked(ca)}
    serials = [row["serial"] for row in issued(ca)
               if row.get("site") == site and row.get("gate") == gate
               and row.get("serial") not in done]
    if not serials and not any(r.get("site") == site and r.get("gate") == gate
                               for r in issued(ca)):
        raise UsageError(f"{site}/{gate}: this CA never issued a certificate to that gate")
    stamp = _now().isoformat()
    with (ca.folder / REVOKED).open("a", encoding="utf-8") as handle:
        for serial in serials:
            handle.write(json.dumps({"serial": serial, "site": site, "gate": gate,
                                     "revoked_at": stamp}, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    write_crl(ca)
    return serials


def write_crl(ca: Ca) -> Path:
    """Re-sign the CRL with every revoked serial (atomic replace)."""
    now = _now()
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(now - datetime.timedelta(minutes=5))
               .next_update(now + datetime.timedelta(days=CRL_DAYS)))
    for row in revoked(ca):
        when = datetime.datetime.fromisoformat(row["revoked_at"])
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(int(row["serial"], 16))
            .revocation_date(when).build())
    crl = builder.sign(ca.key, None)
    target = ca.folder / CA_CRL
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, target)
    return target


def verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """True when ``ca_cert`` signed ``cert`` (signature and issuer name)."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
