"""``centre.toml``: the typed, frozen settings of ``gate-centre`` (INTERFACE.md "gate-centre").

Same rules as the gate's config (``agent.core.config``; both are built by
``agent.core.schema``): every section a frozen dataclass, unknown keys are errors with
their dotted path, every problem reported at once, relative paths taken from the file's
folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.core.config import (
    _existing_dir,
    _existing_file,
    _identifier,
    _non_negative,
    _positive,
)
from agent.core.errors import ConfigError
from agent.core.schema import build_sections, opt, read_toml, resolve_path

DEFAULT_CENTRE_CONFIG = Path("/etc/gate-centre/centre.toml")
CENTRE_CONFIG_ENV = "GATE_CENTRE_CONFIG"


def _store_url(value: str) -> str | None:
    if value.startswith("sqlite://") and len(value) > len("sqlite:///"):
        return None
    if value.startswith(("postgresql://", "postgres://")):
        return None
    return (f"{value!r} is not a store URL: use sqlite:///ABSOLUTE/PATH.db "
            "(sqlite://NAME.db: beside this file) "
            "or postgresql://USER@HOST:PORT/DB")


def _bind(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if sep and host and port.isdigit() and 1 <= int(port) <= 65535:
        return None
    return f"expected HOST:PORT such as 127.0.0.1:8080, got {value!r}"


@dataclass(frozen=True)
class CentreSection:
    id: str = opt(check=_identifier)


@dataclass(frozen=True)
class StoreSection:
    url: str = opt(check=_store_url)
    # A batch is committed when it holds this many events or is this old, whichever first.
    batch_max: int = opt(500, _positive)
    batch_ms: float = opt(10.0, _positive)
    # ... and at most this many events of one gate (the rest wait for the next batch), so
    # a gate draining a backlog cannot make every commit as long as its window.
    batch_per_gate: int = opt(25, _positive)


@dataclass(frozen=True)
class CentreMqttSection:
    url: str = opt()
    ca_file: Path | None = opt(None, _existing_file)
    cert_file: Path | None = opt(None, _existing_file)
    key_file: Path | None = opt(None, _existing_file)
    username: str | None = opt(None)
    password_file: Path | None = opt(None, _existing_file)
    keepalive_s: int = opt(30, _positive)
    # $share/{share_group}/gate/v1/+/+/events: processes in one group share the load.
    share_group: str = opt("ingest", _identifier)
    reconnect_max_s: float = opt(30.0, _positive)


@dataclass(frozen=True)
class KeysSection:
    ops_key: Path = opt(check=_existing_file)
    trust_ops_dir: Path = opt(check=_existing_dir)


@dataclass(frozen=True)
class SweepSection:
    hole_after_s: float = opt(300.0, _positive)
    every_s: float = opt(10.0, _positive)
    # A hole gets a resend at most this often, and is recorded lost after this many.
    resend_every_s: float = opt(300.0, _positive)
    resend_attempts: int = opt(5, _positive)
    # Rows under the marks re-counted this often (and at start): deleted rows are holes.
    audit_every_s: float = opt(600.0, _positive)


@dataclass(frozen=True)
class TimeSection:
    publish_every_s: float = opt(60.0, _non_negative)  # 0: no broadcast (requests only)


def _zone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"{value!r} is not a time zone name such as Asia/Shanghai (IANA tz database)"
    return None


@dataclass(frozen=True)
class WebSection:
    """The console (``agent.centre.web``); docs/centre.md "Console"."""

    bind: str = opt("127.0.0.1:8080", _bind)
    time_zone: str = opt("Asia/Shanghai", _zone)      # pages show times in this zone
    language: Literal["zh-CN", "en"] = opt("zh-CN")    # the default; staff may switch
    # 32+ random bytes; without it a fresh secret per start (sessions end on restart).
    session_secret_file: Path | None = opt(None, _existing_file)
    session_hours: float = opt(12.0, _positive)
    tls_cert_file: Path | None = opt(None, _existing_file)
    tls_key_file: Path | None = opt(None, _existing_file)
    behind_tls_proxy: bool = opt(False)  # a reverse proxy does TLS: cookies get Secure


@dataclass(frozen=True)
class CentreConfig:
    centre: CentreSection
    store: StoreSection
    mqtt: CentreMqttSection
    keys: KeysSection
    sweep: SweepSection = field(default_factory=SweepSection)
    time: TimeSection = field(default_factory=TimeSection)
    web: WebSection | None = None
    path: Path | None = None


def resolve_centre_config_path(cli_value: str | None) -> Path:
    """``--config``, else ``$GATE_CENTRE_CONFIG``, else /etc/gate-centre/centre.toml."""
    return resolve_path(cli_value, CENTRE_CONFIG_ENV, DEFAULT_CENTRE_CONFIG)


def load_centre_config(path: Path) -> CentreConfig:
    """Read and validate ``centre.toml``; ConfigError lists every problem."""
    raw = read_toml(path, "centre.example.toml")
    return centre_config_from_mapping(raw, path.resolve().parent, path)


def centre_config_from_mapping(raw: Mapping[str, Any], base_dir: Path,
                               path: Path | None = None) -> CentreConfig:
    problems: list[str] = []
    values = build_sections(CentreConfig, raw, base_dir, problems)
    store = values.get("store")
    if isinstance(store, StoreSection) and store.url.startswith("sqlite://"):
        # sqlite:///var/lib/x.db is /var/lib/x.db; sqlite://x.db is beside this file.
        db = Path(store.url[len("sqlite://"):])
        if not db.is_absolute():
            values["store"] = dataclasses.replace(store, url=f"sqlite://{base_dir / db}")
    web = values.get("web")
    if isinstance(web, WebSection) and (web.tls_cert_file is None) != (web.tls_key_file is None):
        problems.append("web: tls_cert_file and tls_key_file go together (give both, or "
                        "neither and behind_tls_proxy = true behind a TLS proxy)")
    if problems:
        raise ConfigError(problems, str(path) if path else None)
    return CentreConfig(**values, path=path)
