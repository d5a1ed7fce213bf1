"""Where the broker is and how to authenticate to it: URL, TLS files, credentials.

``mqtts://host[:8883]`` is TLS with the CA file and, per device, a client certificate
and key; ``mqtt://host[:1883]`` is plain TCP and exists for tests and local development.
The same settings serve the gate (from ``[mqtt]``) and gatectl (from its options).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agent.core.config import MqttSection
from agent.core.errors import ConfigError, UsageError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerSettings:
    """Everything needed to open one MQTT connection (no secrets in ``repr``)."""

    host: str
    port: int
    tls: bool
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30

    def __repr__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"BrokerSettings({scheme}://{self.host}:{self.port})"

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying TLS context (CA file or system CAs, optional client certificate)."""
        if not self.tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # Python 3.13 turns this on by default; set it here so a CA certificate that
        # lacks what strict X.509 wants (keyUsage) fails today, not after an OS upgrade.
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        if self.cert_file:
            context.load_cert_chain(
                str(self.cert_file), str(self.key_file) if self.key_file else None
            )
        return context


def parse_broker_url(url: str) -> tuple[str, int, bool]:
    """``mqtt[s]://host[:port]`` -> (host, port, tls); UsageError says what is accepted."""
    parts = urlsplit(url.strip())
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise UsageError(
            f"broker URL {url!r} is not usable: use mqtts://HOST[:PORT] (TLS) "
            "or mqtt://HOST[:PORT] (plain TCP, tests only)"
        )
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise UsageError(
            f"broker URL {url!r} has a path, query or user part: give only "
            "scheme, host and port (credentials go in --username/--password-file)"
        )
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise UsageError(f"broker URL {url!r} has an invalid port: use 1-65535") from None
    return parts.hostname, port, parts.scheme == "mqtts"


def read_password(path: Path) -> str:
    """The first line of a password file (kept out of the config file itself)."""
    try:
        return path.read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise ConfigError(
            f"mqtt.password_file: cannot read a password from {path} ({exc}): "
            "put the password on the first line"
        ) from None


def broker_settings(
    url: str,
    *,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    username: str | None = None,
    password_file: Path | None = None,
    keepalive_s: int = 30,
) -> BrokerSettings:
    """Validate a broker URL with its TLS files; UsageError on a mismatch."""
    host, port, tls = parse_broker_url(url)
    if not tls and (ca_file or cert_file or key_file):
        raise UsageError(
            f"TLS files were given but {url!r} is plain TCP: use an mqtts:// URL"
        )
    if bool(cert_file) != bool(key_file):
        raise UsageError("a client certificate needs its key and the other way round: give both")
    return BrokerSettings(
        host=host,
        port=port,
        tls=tls,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        username=username,
        password=read_password(password_file) if password_file else None,
        keepalive_s=keepalive_s,
    )


def settings_from_config(mqtt: MqttSection) -> BrokerSettings:
    """``[mqtt]`` -> settings; problems are reported as config errors with their key."""
    try:
        return broker_settings(
            mqtt.url,
            ca_file=mqtt.ca_file,
            cert_file=mqtt.cert_file,
            key_file=mqtt.key_file,
            username=mqtt.username,
            password_file=mqtt.password_file,
            keepalive_s=mqtt.keepalive_s,
        )
    except UsageError as exc:
        raise ConfigError(f"mqtt.url: {exc}") from None
