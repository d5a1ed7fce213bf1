"""Per-gate provisioning bundles: everything one gate needs, checked before it is written.

``DIR/SITE-GATE/`` holds ``config.toml`` (valid for that gate: it loads with
``load_config``), ``keys/issuers`` and ``keys/ops`` (public keys), ``tls/ca.pem`` (the CA
the broker's certificate chains to), ``tls/client-ca.pem``, ``tls/gate.pem`` and
``tls/gate.key`` (CN ``gate-SITE-GATE``), ``installer-token`` (one-time, for the gate's
installer page), ``revocations.full`` when given, ``bundle.json`` (who it is for) and
``SHA256SUMS`` (``sha256sum -c`` format, every file above). Every input is checked for
every gate of a run before the first certificate is issued, so a bad row changes nothing.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import os
import secrets
import shutil
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.centre.provision import acl, pki
from agent.centre.provision.ids import bundle_name, check_gate, common_name
from agent.core.config import config_from_mapping, load_config
from agent.core.errors import ConfigError, GateError, KeyFileError, UsageError
from agent.protocol.keys import load_keyring
from agent.protocol.revocation import parse_revocation_list
from agent.sync.broker import parse_broker_url

SUMS, META, TOKEN, KEY_FILE = "SHA256SUMS", "bundle.json", "installer-token", "tls/gate.key"
SECRETS = (KEY_FILE, TOKEN)  # removed from the boot partition once installed
FORMAT = 1
# Keys provisioning writes itself: a CSV column or --set may not override them.
OWNED = frozenset({"gate.site", "gate.id", "trust.keys_dir", "trust.ops_keys_dir",
                   "mqtt.url", "mqtt.ca_file", "mqtt.cert_file", "mqtt.key_file"})


@dataclass(frozen=True)
class GateSpec:
    site: str
    gate: str
    options: Mapping[str, Any] = field(default_factory=dict)  # dotted key -> value
    where: str = "command line"


@dataclass(frozen=True)
class Inputs:
    ca: pki.Ca
    issuers: Path
    ops: Path
    broker: str
    broker_ca: bytes
    revocations: bytes | None = None


def parse_value(text: str) -> Any:
    """A CSV cell or --set value: a TOML literal (true, 17, 2.5, "x"), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key.count(".") != 1:
            raise UsageError(f"--set {item!r}: use SECTION.KEY=VALUE (e.g. door.relay_pin=26)")
        options[key.strip()] = parse_value(value.strip())
    return options


def read_csv(path: Path, defaults: Mapping[str, Any] | None = None) -> list[GateSpec]:
    """Rows of ``site,gate[,section.key...]``; refuses duplicates and unusable ids."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if not rows or [c.strip() for c in rows[0][:2]] != ["site", "gate"]:
        raise UsageError(f"{path}: the first line must be the header site,gate[,section.key...]")
    header = [c.strip() for c in rows[0]]
    for name in header[2:]:
        if name.count(".") != 1:
            raise UsageError(f"{path}: column {name!r} is not a config key such as "
                             "door.relay_active_high")
    specs = []
    for number, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        if len(row) > len(header):
            raise UsageError(f"{path}:{number}: {len(row)} cells for {len(header)} columns")
        cells = [c.strip(" \t") for c in row] + [""] * (len(header) - len(row))
        options = dict(defaults or {})
        options.update({k: parse_value(v) for k, v in zip(header[2:], cells[2:], strict=True)
                        if v})
        specs.append(GateSpec(cells[0], cells[1], options, f"{path}:{number}"))
    if not specs:
        raise UsageError(f"{path}: no gates listed under the header")
    return specs


def check_specs(specs: Sequence[GateSpec], ca: pki.Ca) -> None:
    """Ids, duplicates and name collisions, within the run and against the CA's ledger."""
    seen: dict[str, GateSpec] = {}
    for spec in specs:
        try:
            check_gate(spec.site, spec.gate)
        except UsageError as exc:
            raise UsageError(f"{spec.where}: {exc}") from None
        cn = common_name(spec.site, spec.gate)
        if cn in seen:
            first = seen[cn]
            same = (first.site, first.gate) == (spec.site, spec.gate)
            raise UsageError(
                f"{spec.where}: {spec.site}/{spec.gate} "
                + ("is listed twice" if same else
                   f"gets the same certificate name {cn!r} as {first.site}/{first.gate}")
                + f" (first at {first.where}): remove one row")
        seen[cn] = spec
        bad = sorted(set(spec.options) & OWNED)
        if bad:
            raise UsageError(f"{spec.where}: {', '.join(bad)} is set by provisioning itself "
                             "(--broker, --issuers, --ops, the gate's name): drop the column")
    owners = {row["cn"]: (row.get("site"), row.get("gate")) for row in pki.issued(ca)}
    for cn, spec in seen.items():
        if cn in owners and owners[cn] != (spec.site, spec.gate):
            site, gate = owners[cn]
            raise UsageError(f"{spec.where}: certificate name {cn!r} was already issued by "
                             f"this CA to {site}/{gate}: choose other ids")


def load_inputs(ca_dir: Path, issuers: Path, ops: Path, broker: str,
                broker_ca: Path | None, revocations: Path | None) -> Inputs:
    """Every input the run shares, checked once: CA pair, keys, URL, revocation list."""
    ca = pki.load_ca(ca_dir)
    try:
        _host, _port, tls = parse_broker_url(broker)
    except UsageError as exc:
        raise UsageError(f"--broker: {exc}") from None
    if not tls:
        raise UsageError(f"--broker {broker!r} is plain TCP: gates use mqtts://HOST[:PORT]")
    keyring = load_keyring(issuers, ops)
    roles = {k.role for k in keyring.keys()}  # noqa: SIM118 (a KeyRing, not a dict)
    for role, folder in (("issuer", issuers), ("ops", ops)):
        if role not in roles:
            raise KeyFileError(f"{folder}: no {role} public keys (KID.pub) in it: "
                               "give the folder gatectl keys new wrote them to")
    listed = None
    if revocations is not None:
        try:
            listed = revocations.read_bytes()
        except OSError as exc:
            raise UsageError(f"--revocations {revocations}: {exc.strerror}") from None
        try:
            lst = parse_revocation_list(listed, keyring, time.time())
        except GateError as exc:
            raise UsageError(f"--revocations {revocations}: {exc}") from None
        if lst.kind != "full":
            raise UsageError(f"--revocations {revocations}: a delta list; give the current "
                             "full list (gatectl revocations full)")
    server_ca = ca.cert_pem
    if broker_ca is not None:
        try:
            server_ca = broker_ca.read_bytes()
        except OSError as exc:
            raise UsageError(f"--broker-ca {broker_ca}: {exc.strerror}") from None
        if b"-----BEGIN CERTIFICATE-----" not in server_ca:
            raise UsageError(f"--broker-ca {broker_ca}: not a PEM certificate")
    return Inputs(ca, issuers, ops, broker, server_ca, listed)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise UsageError(f"cannot write {value!r} into config.toml: use a string, number or bool")


def config_mapping(spec: GateSpec, inputs: Inputs) -> dict[str, dict[str, Any]]:
    raw: dict[str, dict[str, Any]] = {
        "gate": {"site": spec.site, "id": spec.gate},
        "trust": {"keys_dir": "keys/issuers", "ops_keys_dir": "keys/ops"},
        "mqtt": {"url": inputs.broker, "ca_file": "tls/ca.pem", "cert_file": "tls/gate.pem",
                 "key_file": KEY_FILE},
        # The installer's page (off unless enabled, e.g. --set web.enabled=true) logs in
        # with the bundle's one-time token.
        "web": {"token_file": TOKEN},
    }
    for dotted, value in spec.options.items():
        section, key = dotted.split(".")
        raw.setdefault(section, {})[key] = value
    return raw


def config_text(raw: Mapping[str, Mapping[str, Any]], spec: GateSpec) -> str:
    out = [f"# gate-agent config for {spec.site}/{spec.gate}, written by gatectl provision.",
           "# Options not listed keep their defaults (config.example.toml lists them all).",
           ""]
    for section, table in raw.items():
        out.append(f"[{section}]")
        out += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
        out.append("")
    return "\n".join(out)


def precheck_config(spec: GateSpec, inputs: Inputs) -> None:
    """The gate's config as it will be, validated before anything is issued."""
    raw = config_mapping(spec, inputs)
    raw["trust"] = {"keys_dir": str(inputs.issuers.resolve()),
                    "ops_keys_dir": str(inputs.ops.resolve())}
    raw["mqtt"] = {k: v for k, v in raw["mqtt"].items() if not k.endswith("_file")}
    try:
        config_from_mapping(raw, base_dir=inputs.issuers.resolve())
    except ConfigError as exc:
        raise UsageError(f"{spec.where}: {spec.site}/{spec.gate}: {exc}") from None


def _copy_keys(source: Path, target: Path) -> None:
    target.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        if path.suffix in (".pub", ".toml") and path.is_file():
            shutil.copyfile(path, target / path.name)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def sha256sums(folder: Path) -> str:
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and p.name != SUMS)
    return "".join(f"{hashlib.sha256((folder / f).read_bytes()).hexdigest()}  {f}\n"
                   for f in files)


@dataclass(frozen=True)
class Staged:
    folder: Path  # written, under a temporary name
    final: Path
    token: str
    row: dict[str, Any]  # the CA ledger line of its certificate


def write_bundle(spec: GateSpec, inputs: Inputs, out: Path) -> Staged:
    """One gate's bundle folder, under a temporary name (renamed once recorded)."""
    final = out / bundle_name(spec.site, spec.gate)
    staging = out / f".{final.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    raw = config_mapping(spec, inputs)
    _write(staging / "config.toml", config_text(raw, spec).encode())
    _copy_keys(inputs.issuers, staging / "keys" / "issuers")
    _copy_keys(inputs.ops, staging / "keys" / "ops")
    cn = common_name(spec.site, spec.gate)
    issued = pki.issue_client(inputs.ca, cn, spec.site, spec.gate, record=False)
    _write(staging / "tls" / "ca.pem", inputs.broker_ca)
    _write(staging / "tls" / "client-ca.pem", inputs.ca.cert_pem)
    _write(staging / "tls" / "gate.pem", issued.cert_pem)
    _write(staging / KEY_FILE, issued.key_pem, 0o600)
    token = secrets.token_urlsafe(24)
    _write(staging / TOKEN, (token + "\n").encode(), 0o600)
    if inputs.revocations is not None:
        _write(staging / "revocations.full", inputs.revocations)
    meta = {"format": FORMAT, "site": spec.site, "gate": spec.gate, "cn": cn,
            "serial": f"{issued.serial:x}", "broker": inputs.broker,
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    _write(staging / META, (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode())
    load_config(staging / "config.toml")  # what the gate will load: must pass here too
    _write(staging / SUMS, sha256sums(staging).encode())
    return Staged(staging, final, token, issued.row)


def provision(specs: Sequence[GateSpec], inputs: Inputs, out: Path) -> list[Path]:
    """Check every gate, then write every bundle, the run's ACL and the token list."""
    check_specs(specs, inputs.ca)
    for spec in specs:
        precheck_config(spec, inputs)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: give a folder")
    taken = [s for s in specs if (out / bundle_name(s.site, s.gate)).exists()]
    if taken:
        raise UsageError(f"{out / bundle_name(taken[0].site, taken[0].gate)} already exists "
                         f"({len(taken)} of the gates): remove it or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make {out}: {exc.strerror}: choose another --out") from None
    staged = [write_bundle(spec, inputs, out) for spec in specs]
    # Every certificate is in the CA's ledger (so it can be retired) before any bundle
    # can be copied to a card.
    pki.record_issued(inputs.ca, [s.row for s in staged])
    for s in staged:
        os.rename(s.folder, s.final)
    write_acl(out / "mosquitto.acl", [(s.site, s.gate) for s in specs])
    _append_tokens(out / "installer-tokens.csv",
                   [(spec.site, spec.gate, s.token) for spec, s in zip(specs, staged,
                                                                       strict=True)])
    return [s.final for s in staged]


def write_acl(path: Path, gates: Iterable[tuple[str, str]]) -> None:
    text = acl.render(gates, acl.existing_gates(path))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _append_tokens(path: Path, rows: Sequence[tuple[str, str, str]]) -> None:
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["site", "gate", "installer_token"])
        writer.writerows(rows)
