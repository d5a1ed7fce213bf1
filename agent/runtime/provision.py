"""Installing a provisioning bundle on the gate (``gate-agent provision apply``).

The first-boot unit runs it on ``/boot/firmware/gate-agent``. Everything is checked before
anything is written: ``SHA256SUMS`` must list exactly the files present (every byte of
every file counts), ``bundle.json``, the config and the certificate must agree on the
gate, the certificate must chain to the bundle's client CA and match its key. Only then
are the files installed into ``ROOT/etc/gate-agent`` (owners and modes set on temporary
files, then renamed into place) and the secrets deleted from the boot partition. The
manifest guards against damage and mix-ups on the way to the card; the certificate's
signature is what the broker trusts.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from agent.core.config import load_config
from agent.core.errors import ConfigError, GateError, UsageError

SUMS, APPLIED_SUMS, META = "SHA256SUMS", "SHA256SUMS.applied", "bundle.json"
SECRETS = ("tls/gate.key", "installer-token")
RECORD = "provisioned.json"
USER = "gate-agent"
MAX_FILE = 1 << 20
REQUIRED = ("config.toml", META, "tls/ca.pem", "tls/client-ca.pem", "tls/gate.pem", *SECRETS)
_LINE = re.compile(r"([0-9a-f]{64})  ([A-Za-z0-9._/-]+)")
_KEY_FILE = re.compile(r"keys/(issuers|ops)/[A-Za-z0-9_][A-Za-z0-9._-]*\.(pub|toml)")


class BundleRefused(GateError, ValueError):
    """The bundle was not installed; nothing was changed."""


@dataclass(frozen=True)
class Owners:
    uid: int | None  # None: not root, owners are left as they are
    gid: int | None


@dataclass
class Applied:
    site: str
    gate: str
    serial: str
    already: bool
    installed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # after install (secrets not removed)


def _mode(name: str) -> int:
    return 0o600 if name in SECRETS else 0o640


def _install_name(name: str) -> str:
    return {"bundle.json": RECORD}.get(name, name)


def read_sums(folder: Path) -> tuple[str, dict[str, str]]:
    """(which file, {path: sha256}); BundleRefused for anything but the strict format."""
    for name in (SUMS, APPLIED_SUMS):
        path = folder / name
        if path.is_file():
            break
    else:
        raise BundleRefused(f"{folder}: no {SUMS}: not a bundle from gatectl provision")
    data = path.read_bytes()[: MAX_FILE + 1]
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise BundleRefused(f"{path}: damaged (not ASCII): copy the bundle again") from None
    sums: dict[str, str] = {}
    if not text.endswith("\n") or len(data) > MAX_FILE:
        raise BundleRefused(f"{path}: damaged (truncated): copy the bundle again")
    for number, line in enumerate(text[:-1].split("\n"), 1):
        match = _LINE.fullmatch(line)
        if not match or ".." in match.group(2).split("/") or match.group(2) in sums:
            raise BundleRefused(f"{path}:{number}: damaged line: copy the bundle again")
        sums[match.group(2)] = match.group(1)
    return name, sums


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and p.name not in (SUMS, APPLIED_SUMS)}


def verify(folder: Path, record: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """Check the bundle; return (bundle.json, already applied)."""
    sums_name, sums = read_sums(folder)
    for name in sums:
        if name not in REQUIRED and name != "revocations.full" and not _KEY_FILE.fullmatch(name):
            raise BundleRefused(f"{folder}: {SUMS} lists {name}, which no bundle has")
    missing = [name for name in REQUIRED if name not in sums]
    if missing:
        raise BundleRefused(f"{folder}: {SUMS} does not list {', '.join(missing)}")
    present = _files(folder)
    extra = sorted(present - set(sums))
    if extra:
        raise BundleRefused(f"{folder}: {extra[0]} is not in {SUMS}: a file was added; "
                            "copy the bundle again")
    absent = sorted(set(sums) - present)
    for name in sorted(present):
        path = folder / name
        if path.stat().st_size > MAX_FILE or hashlib.sha256(
                path.read_bytes()).hexdigest() != sums[name]:
            raise BundleRefused(f"{path}: checksum does not match {SUMS}: the bundle was "
                                "changed or damaged; copy it again from the centre")
    meta = _meta(folder / META)
    already = record is not None and record.get("serial") == meta["serial"] and \
        record.get("site") == meta["site"] and record.get("gate") == meta["gate"]
    if absent and not (already and set(absent) <= set(SECRETS)):
        raise BundleRefused(f"{folder}: {absent[0]} is missing: copy the whole bundle folder")
    if sums_name == APPLIED_SUMS and not already:
        raise BundleRefused(f"{folder}: this bundle was applied on another card and its "
                            "secrets are gone: make a new one with gatectl provision")
    if not already:
        _check_config(folder, meta)
        _check_certificate(folder, meta)
    return meta, already


def _meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_bytes())
    except ValueError:
        raise BundleRefused(f"{path}: not JSON: copy the bundle again") from None
    if not isinstance(meta, dict) or meta.get("format") != 1 or not all(
            isinstance(meta.get(k), str) for k in ("site", "gate", "cn", "serial")):
        raise BundleRefused(f"{path}: not a format 1 bundle description: update gate-agent "
                            "or make the bundle with this version's gatectl")
    return meta


def _check_config(folder: Path, meta: dict[str, Any]) -> None:
    try:
        config = load_config(folder / "config.toml")
    except ConfigError as exc:
        raise BundleRefused(f"{folder}: config.toml is not valid: {exc}") from None
    if (config.gate.site, config.gate.id) != (meta["site"], meta["gate"]):
        raise BundleRefused(f"{folder}: config.toml is for {config.gate.site}/{config.gate.id}"
                            f" but the bundle for {meta['site']}/{meta['gate']}")


def _check_certificate(folder: Path, meta: dict[str, Any]) -> None:
    tls = folder / "tls"
    try:
        cert = x509.load_pem_x509_certificate((tls / "gate.pem").read_bytes())
        ca = x509.load_pem_x509_certificate((tls / "client-ca.pem").read_bytes())
        key = serialization.load_pem_private_key((tls / "gate.key").read_bytes(), None)
    except (ValueError, TypeError):
        raise BundleRefused(f"{tls}: a certificate or the key is not readable PEM") from None
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if [n.value for n in names] != [meta["cn"]] or meta["cn"] != \
            f"gate-{meta['site']}-{meta['gate']}":
        raise BundleRefused(f"{tls}/gate.pem does not name gate {meta['site']}/{meta['gate']}")
    if f"{cert.serial_number:x}" != meta["serial"]:
        raise BundleRefused(f"{tls}/gate.pem is not the certificate bundle.json names")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise BundleRefused(f"{tls}/gate.pem is not signed by the bundle's client CA") from None
    pem = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.PEM, pem) != \
            cert.public_key().public_bytes(serialization.Encoding.PEM, pem):
        raise BundleRefused(f"{tls}/gate.key does not belong to gate.pem")
    if cert.not_valid_after_utc < datetime.datetime.now(datetime.UTC):
        raise BundleRefused(f"{tls}/gate.pem expired: make a new bundle")


def lookup_owner(root: Path, user: str = USER) -> Owners:
    """uid/gid of the service user in ROOT's own passwd (not the machine's, for --root)."""
    if os.geteuid() != 0:
        return Owners(None, None)
    try:
        lines = (root / "etc" / "passwd").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":")
        if len(parts) >= 4 and parts[0] == user:
            return Owners(int(parts[2]), int(parts[3]))
    raise UsageError(f"user {user} does not exist in {root / 'etc' / 'passwd'}: run "
                     "systemd-sysusers (the first boot does) or scripts/install.sh first")


def read_record(etc: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((etc / RECORD).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"site": "?", "gate": "?", "serial": "?"}  # unreadable: treat as another gate
    return record if isinstance(record, dict) else None


def apply_bundle(folder: Path, root: Path = Path("/"), *, force: bool = False) -> Applied:
    """Verify, then install; BundleRefused/UsageError before anything is written."""
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder: give the bundle folder "
                         "(on the card: /boot/firmware/gate-agent)")
    etc = root / "etc" / "gate-agent"
    record = read_record(etc)
    meta, already = verify(folder, record)
    applied = Applied(meta["site"], meta["gate"], meta["serial"], already)
    if not already:
        if record is not None and (record.get("site"), record.get("gate")) != (
                meta["site"], meta["gate"]) and not force:
            raise BundleRefused(
                f"this gate is provisioned as {record.get('site')}/{record.get('gate')}; the "
                f"bundle is for {meta['site']}/{meta['gate']}: use --force to replace it")
        owners = lookup_owner(root)
        applied.installed = _install(folder, etc, owners, meta)
        _state_dir(root, folder, owners)
    _finish(folder, applied)
    return applied


def _chown(path: Path | int, uid: int | None, gid: int | None) -> None:
    if uid is None or gid is None:
        return
    if isinstance(path, int):
        os.fchown(path, uid, gid)
    else:
        os.chown(path, uid, gid)


def _install(folder: Path, etc: Path, owners: Owners, meta: dict[str, Any]) -> list[str]:
    names = sorted(_files(folder))
    staged: list[tuple[Path, Path]] = []
    record = dict(meta, applied_at=datetime.datetime.now(datetime.UTC).isoformat(
        timespec="seconds"))
    try:
        for sub in ("", "keys", "keys/issuers", "keys/ops", "tls"):
            directory = etc / sub
            directory.mkdir(mode=0o750, parents=True, exist_ok=True)
            directory.chmod(0o750)
            _chown(directory, 0 if owners.uid is not None else None, owners.gid)
        for name in names:
            data = (folder / name).read_bytes()
            if name == META:
                data = (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode()
            target = etc / _install_name(name)
            tmp = target.with_name(f".{target.name}.provision")
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _mode(name))
            try:
                os.fchmod(fd, _mode(name))
                _chown(fd, owners.uid if name in SECRETS else (
                    0 if owners.uid is not None else None), owners.gid)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            staged.append((tmp, target))
    except OSError as exc:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write into {etc}: {exc.strerror}: nothing was installed "
                         "(run as root, or give --root)") from None
    for tmp, target in staged:
        os.replace(tmp, target)
    _drop_stale_keys(etc, {n for n in names if n.startswith("keys/")})
    for sub in ("", "keys/issuers", "keys/ops", "tls"):
        _fsync_dir(etc / sub)
    return [_install_name(n) for n in names]


def _drop_stale_keys(etc: Path, keep: Iterable[str]) -> None:
    """The bundle's trust is the gate's trust: keys it does not list are removed."""
    wanted = set(keep)
    for role in ("issuers", "ops"):
        for path in (etc / "keys" / role).iterdir():
            if path.suffix in (".pub", ".toml") and f"keys/{role}/{path.name}" not in wanted:
                path.unlink()


def _state_dir(root: Path, folder: Path, owners: Owners) -> None:
    """The state folder, owned by the service user, so root's tools hand over to it."""
    state = load_config(root / "etc" / "gate-agent" / "config.toml").state.dir
    target = root / state.relative_to(state.anchor) if state.is_absolute() else state
    target.mkdir(mode=0o750, parents=True, exist_ok=True)
    _chown(target, owners.uid, owners.gid)


def _finish(folder: Path, applied: Applied) -> None:
    """Delete the secrets from the boot partition; mark the bundle as applied."""
    for name in SECRETS:
        path = folder / name
        try:
            path.unlink()
            applied.removed.append(name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            applied.problems.append(f"could not delete {path}: {exc.strerror}; delete it by "
                                    "hand (it is a secret)")
    sums = folder / SUMS
    if sums.exists():
        try:
            os.replace(sums, folder / APPLIED_SUMS)
        except OSError as exc:
            applied.problems.append(f"could not rename {sums}: {exc.strerror}")
    _fsync_dir(folder)
    _fsync_dir(folder / "tls")
    os.sync()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # FAT and some file systems refuse fsync on folders
    finally:
        os.close(fd)
