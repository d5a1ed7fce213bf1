"""Typed, frozen settings loaded from TOML, with every problem reported at once.

Each ``[section]`` is a frozen dataclass; a field's type annotation is its schema and
an optional ``check`` in the field's metadata validates its value. Unknown keys are
errors (a typo must never silently fall back to a default on a door controller).
Relative paths are taken relative to the config file's folder. How a table becomes a
section is :mod:`agent.core.schema`, shared with ``centre.toml``; this module holds the
gate's sections and the checks of their values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.core.errors import ConfigError
from agent.core.ids import id_problem
from agent.core.schema import Check, build_sections, opt, read_toml, resolve_path

DEFAULT_CONFIG_PATH = Path("/etc/gate-agent/config.toml")
CONFIG_ENV = "GATE_AGENT_CONFIG"


def _positive(value: float) -> str | None:
    # TOML allows inf: an unlock_s of inf would leave the relay released for good.
    return None if 0 < value < math.inf else f"must be a finite number above 0, got {value}"


def _non_negative(value: float) -> str | None:
    return None if 0 <= value < math.inf else f"must be a finite number 0 or more, got {value}"


def _upto(limit: float, *, zero_ok: bool = False) -> Check:
    """Above 0 (or 0 or more) and at most ``limit``: every number has an upper bound too
    (an ``unlock_s`` of 1e9 would hold the relay released for decades)."""
    def check(value: float) -> str | None:
        problem = (_non_negative if zero_ok else _positive)(value)
        if problem or value <= limit:
            return problem
        return f"must be at most {limit:g}, got {value}"
    return check


def _bcm_pin(value: int | None) -> str | None:
    if value is None or 0 <= value <= 27:
        return None
    return f"must be a BCM GPIO number from 0 to 27, got {value}"


def _existing_dir(value: Path | None) -> str | None:
    if value is None or value.is_dir():
        return None
    return f"{value} does not exist or is not a folder"


def _existing_file(value: Path | None) -> str | None:
    if value is None or value.is_file():
        return None
    return f"{value} does not exist or is not a file"


def _identifier(value: str) -> str | None:
    # The one grammar (agent.core.ids): it becomes part of MQTT topics and scopes.
    return id_problem(value, "")


def _port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else f"must be a TCP port 1-65535, got {value}"


@dataclass(frozen=True)
class GateSection:
    site: str = opt(check=_identifier)
    id: str = opt(check=_identifier)


@dataclass(frozen=True)
class TrustSection:
    keys_dir: Path = opt(check=_existing_dir)
    ops_keys_dir: Path = opt(check=_existing_dir)


@dataclass(frozen=True)
class PolicySection:
    accept_static: bool = opt(False)
    presentation_window_s: int = opt(30, _upto(600))
    # Tolerated difference between the phone's clock and ours for presentations.
    clock_skew_s: int = opt(5, _upto(600, zero_ok=True))
    # Revocation list older than this raises an alarm (and denies, if on_stale = "deny").
    revocations_max_age_h: float = opt(72.0, _upto(24 * 365))
    on_stale_revocations: Literal["alarm", "deny"] = opt("alarm")
    # No list provably as new as the newest the gate had (lost, downgraded, never had
    # one): "deny" every scan (revocations_unknown), or "use_older" list it still has
    # (never "admit everyone": with no list at all scans are denied either way).
    on_unknown_revocations: Literal["deny", "use_older"] = opt("deny")
    # What to do when no clock source is trusted ([clock]): "interval" grants only
    # credentials valid over the whole [time floor, clock + untrusted_margin_s] span;
    # "deny" refuses every scan; "allow" decides with the floor-protected clock.
    on_untrusted_clock: Literal["interval", "deny", "allow"] = opt("interval")
    untrusted_margin_s: float = opt(3600.0, _non_negative)
    # Denied scans allowed per gate per minute before further scans are rate_limited.
    denials_per_minute: int = opt(20, _upto(100_000))
    # Standing gate mode; the centre can switch it by command (optionally for a while).
    mode: Literal["normal", "lockdown", "free"] = opt("normal")


@dataclass(frozen=True)
class StateSection:
    dir: Path = opt(Path("/var/lib/gate-agent"))
    outbox_capacity: int = opt(200_000, _upto(100_000_000))
    retention_days: int = opt(90, _upto(3650))


@dataclass(frozen=True)
class ClockSection:
    # A battery-backed hardware clock is fitted (an RTC HAT): trust the system clock
    # after boot even before NTP answers (never below the time floor).
    rtc: bool = opt(False)
    # After NTP was synchronised this boot, keep trusting that time (plus monotonic time)
    # this long when NTP is lost; a Pi's crystal drifts < 50 ppm (~4 s a day).
    holdover_h: float = opt(24.0, _non_negative)
    # A nonce-answered centre time is trusted this long (plus monotonic time since).
    centre_valid_h: float = opt(6.0, _positive)
    # A trusted clock this far below the time floor is in conflict with it (untrusted).
    floor_bound_s: float = opt(300.0, _positive)
    # A broadcast centre time (no nonce) may move a centre time forward this far at most.
    forward_bound_s: float = opt(300.0, _positive)
    # Ask the centre for time this often while the clock is untrusted.
    request_every_s: float = opt(60.0, _positive)


@dataclass(frozen=True)
class DoorSection:
    relay_pin: int = opt(17, _bcm_pin)
    relay_active_high: bool = opt(True)
    unlock_s: float = opt(3.0, _upto(300))
    contact_pin: int | None = opt(None, _bcm_pin)
    # Level of the contact input when the door is open (reed switch to ground + pull-up: true).
    contact_open_high: bool = opt(True)
    exit_pin: int | None = opt(None, _bcm_pin)
    tamper_pin: int | None = opt(None, _bcm_pin)
    fire_pin: int | None = opt(None, _bcm_pin)
    # Input level when pressed / active (switch to GND + pull-up reads low when closed).
    exit_active_high: bool = opt(False)
    tamper_active_high: bool = opt(True)  # enclosure opened releases a switch held to GND
    fire_active_high: bool = opt(False)  # fire panel contact closes to GND on alarm
    inputs_pull_up: bool = opt(True)
    bounce_s: float = opt(0.05, _upto(5, zero_ok=True))
    held_open_s: float = opt(30.0, _upto(86_400))


@dataclass(frozen=True)
class IndicatorsSection:
    green_pin: int | None = opt(None, _bcm_pin)
    red_pin: int | None = opt(None, _bcm_pin)
    buzzer_pin: int | None = opt(None, _bcm_pin)
    active_high: bool = opt(True)


@dataclass(frozen=True)
class ScannerSection:
    kind: Literal["camera", "serial", "none"] = opt("camera")
    # The same code seen again within this window is one scan, not one per frame.
    dedupe_s: float = opt(3.0, _upto(3600, zero_ok=True))


@dataclass(frozen=True)
class CameraSection:
    device: int | str = opt(0)
    width: int = opt(1280, _upto(8192))
    height: int = opt(720, _upto(8192))
    fps: int = opt(15, _upto(240))
    backend: Literal["opencv", "picamera2"] = opt("opencv")
    decoder: Literal["auto", "zxing", "pyzbar"] = opt("auto")


@dataclass(frozen=True)
class SerialSection:
    port: str = opt("/dev/ttyACM0")
    baud: int = opt(9600, _upto(4_000_000))
    terminator: Literal["cr", "lf", "crlf", "any"] = opt("any")


@dataclass(frozen=True)
class MqttSection:
    url: str = opt()
    ca_file: Path | None = opt(None, _existing_file)
    cert_file: Path | None = opt(None, _existing_file)
    key_file: Path | None = opt(None, _existing_file)
    username: str | None = opt(None)
    password_file: Path | None = opt(None, _existing_file)
    keepalive_s: int = opt(30, _upto(65_535))
    # Events published and not yet acknowledged by the broker, at most.
    inflight: int = opt(100, _upto(65_535))
    # Retained status is re-published this often (and on every change the daemon reports).
    status_interval_s: int = opt(60, _upto(86_400))
    # Reconnect delays double up to this bound, with jitter.
    reconnect_max_s: float = opt(30.0, _upto(86_400))
    # When an event leaves the outbox: on the broker's PUBACK, or when the centre
    # acknowledges it on .../events/ack (end to end; survives a broker crash).
    ack: Literal["puback", "centre"] = opt("centre")
    # ack = "centre": events the centre has not confirmed this long after PUBACK are resent.
    ack_timeout_s: float = opt(60.0, _upto(86_400))


def _bind(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return f'must be "address:port" such as "0.0.0.0:8080", got {value!r}'
    return None


@dataclass(frozen=True)
class WebSection:
    """The installer's page on the gate (agent/runtime/web); off unless enabled."""

    enabled: bool = opt(False)
    bind: str = opt("0.0.0.0:8080", _bind)
    # The one-time installer token; default <state dir>/web-token (Config.web_token_path).
    token_file: Path | None = opt(None)


@dataclass(frozen=True)
class Config:
    gate: GateSection
    trust: TrustSection
    policy: PolicySection = field(default_factory=PolicySection)
    state: StateSection = field(default_factory=StateSection)
    clock: ClockSection = field(default_factory=ClockSection)
    door: DoorSection = field(default_factory=DoorSection)
    indicators: IndicatorsSection = field(default_factory=IndicatorsSection)
    scanner: ScannerSection = field(default_factory=ScannerSection)
    camera: CameraSection = field(default_factory=CameraSection)
    serial: SerialSection = field(default_factory=SerialSection)
    mqtt: MqttSection | None = None
    web: WebSection = field(default_factory=WebSection)
    path: Path | None = None

    def web_token_path(self) -> Path:
        """Where the installer page's one-time token lives."""
        return self.web.token_file or self.state.dir / "web-token"

    def pins(self) -> dict[str, int]:
        """Every configured GPIO pin by its dotted config key."""
        used: dict[str, int] = {}
        for section in ("door", "indicators"):
            for f in dataclasses.fields(getattr(self, section)):
                value = getattr(getattr(self, section), f.name)
                if f.name.endswith("_pin") and value is not None:
                    used[f"{section}.{f.name}"] = value
        return used


def resolve_config_path(cli_value: str | None) -> Path:
    """``--config``, else ``$GATE_AGENT_CONFIG``, else /etc/gate-agent/config.toml."""
    return resolve_path(cli_value, CONFIG_ENV, DEFAULT_CONFIG_PATH)


def load_config(path: Path) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem."""
    raw = read_toml(path, "config.example.toml")
    return config_from_mapping(raw, base_dir=path.resolve().parent, path=path)


def config_from_mapping(raw: Mapping[str, Any], base_dir: Path, path: Path | None = None) -> Config:
    """Validate an already-parsed TOML table (also used for the embedded demo config)."""
    problems: list[str] = []
    values = build_sections(Config, raw, base_dir, problems)
    if problems:
        raise ConfigError(problems, str(path) if path else None)
    config = Config(**values, path=path)
    _check_pins(config, problems)
    if problems:
        raise ConfigError(problems, str(path) if path else None)
    return config


def _check_pins(config: Config, problems: list[str]) -> None:
    owner: dict[int, str] = {}
    for key, pin in config.pins().items():
        if pin in owner:
            problems.append(f"{key}: pin {pin} is already used by {owner[pin]}")
        else:
            owner[pin] = key
