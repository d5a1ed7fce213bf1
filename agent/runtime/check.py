"""``gate-agent check``: the installer's checklist, one pass/fail/skip line with a hint each.

Run on the device before leaving the site: config, keys, state dir, clock, relay click
(asked first), inputs, camera or serial scanner, broker with the configured TLS,
revocation list age. Each check is a small function returning a :class:`CheckResult`;
one failing check never stops the others. Hardware is reached through ``hw/`` lazily.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from agent.core.config import Config
from agent.core.errors import GateError
from agent.runtime.checklist import CheckOptions, CheckResult

if TYPE_CHECKING:  # imported lazily at run time: an offline gate never loads paho
    from agent.sync.broker import BrokerSettings


def run_checks(config: Config, options: CheckOptions) -> Iterator[CheckResult]:
    """Every check after the config one, in the order an installer works through them."""
    yield _guard("keys", lambda: check_keys(config))
    yield _guard("state_dir", lambda: check_state_dir(config))
    yield _guard("clock", lambda: check_clock(options))
    factory = None
    try:
        factory = _pin_factory(options.pins)
    except GateError as exc:
        yield CheckResult("gpio", "fail", str(exc),
                          "run on the gate's Raspberry Pi as a user in the gpio group")
    if factory is not None:
        try:
            yield _guard("relay", lambda: check_relay(config, factory, options))
            yield _guard("inputs", lambda: check_inputs(config, factory))
        finally:
            factory.close()
    yield _guard("scanner", lambda: check_scanner(config, options))
    yield _guard("broker", lambda: check_broker(config, options))
    yield _guard("revocations", lambda: check_revocations(config))
    yield _guard("state", lambda: check_state(config))


def _guard(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    try:
        return check()
    except GateError as exc:  # the project's errors say what was wrong and what to do
        return CheckResult(name, "fail", str(exc), "")
    except Exception as exc:  # a check that breaks is a failed check, not a traceback
        return CheckResult(name, "fail", f"{type(exc).__name__}: {exc}",
                           "see the message; GATE_AGENT_DEBUG=1 shows more")


def _pin_factory(kind: str) -> Any:
    from hw.pins import make_pin_factory, pin_factory_from_env

    return pin_factory_from_env() if kind == "env" else make_pin_factory(kind)  # type: ignore[arg-type]


def check_keys(config: Config) -> CheckResult:
    from agent.protocol.keys import load_keyring

    ring = load_keyring(config.trust.keys_dir, config.trust.ops_keys_dir)
    roles = [key.role for key in ring.keys()]  # noqa: SIM118 (KeyRing is not a dict)
    issuers, ops = roles.count("issuer"), roles.count("ops")
    detail = f"{issuers} issuer key(s) in {config.trust.keys_dir}, {ops} ops key(s)"
    if not issuers and not ops:
        return CheckResult("keys", "fail", detail, "copy the centre's issuer public key "
                           "(<kid>.pub) into trust.keys_dir and its operations key into "
                           "trust.ops_keys_dir")
    if not issuers:
        return CheckResult("keys", "fail", detail,
                           "copy the centre's issuer public key (<kid>.pub) into trust.keys_dir")
    if not ops:
        return CheckResult("keys", "fail", detail, "copy the centre's operations public key "
                           "into trust.ops_keys_dir (revocation lists and commands need it)")
    return CheckResult("keys", "pass", detail)


def check_state_dir(config: Config) -> CheckResult:
    folder = config.state.dir
    probe = folder / f".check-{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(b"ok")
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as exc:
        return CheckResult("state_dir", "fail", f"{folder}: {exc.strerror or exc}",
                           f"make {folder} writable by the gate-agent user "
                           "(systemd's StateDirectory does this)")
    usage = os.statvfs(folder)
    free_mb = usage.f_bavail * usage.f_frsize // 1_000_000
    if free_mb < 100:
        return CheckResult("state_dir", "fail", f"{folder}: only {free_mb} MB free",
                           "free space on the SD card: the outbox needs room while offline")
    return CheckResult("state_dir", "pass", f"{folder} writable, {free_mb} MB free")


def check_clock(options: CheckOptions) -> CheckResult:
    from agent.gate.timekeeper import system_clock_synchronised

    probe = options.clock_probe or system_clock_synchronised
    synced = probe()
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if synced:
        return CheckResult("clock", "pass", f"synchronised (now {now})")
    return CheckResult(
        "clock", "fail", f"not known to be synchronised (now {now})",
        "enable NTP (timedatectl set-ntp true) and let it reach a server; until then "
        "policy.on_untrusted_clock decides scans",
    )


def check_relay(config: Config, factory: Any, options: CheckOptions) -> CheckResult:
    from agent.runtime.hwsettings import relay_settings
    from hw.door import RelayDoor

    pin = config.door.relay_pin
    if not options.assume_yes:
        if options.ask is None:
            return CheckResult("relay", "skip", f"relay on GPIO{pin} not clicked: no terminal "
                               "to ask", "run on a terminal, or pass --yes to click it")
        if not options.ask(f"Click the door relay on GPIO{pin} now (the door releases for "
                           "0.5 s)?"):
            return CheckResult("relay", "skip", "relay click declined", "")
    states: list[str] = []
    with RelayDoor(relay_settings(config.door), factory, on_change=states.append) as door:
        door.pulse(0.5)
        deadline = time.monotonic() + 3.0
        while door.unlocked and time.monotonic() < deadline:
            time.sleep(0.05)
        locked_again = not door.unlocked
    if states[:2] == ["unlocked", "locked"] and locked_again:
        return CheckResult("relay", "pass", f"GPIO{pin} released and locked again",
                           "listen for two clicks; if none, check the relay's wiring and "
                           "door.relay_active_high")
    return CheckResult("relay", "fail", f"GPIO{pin} transitions were {states}",
                       "check door.relay_pin and the relay HAT")


def check_inputs(config: Config, factory: Any) -> CheckResult:
    from agent.runtime.hwsettings import input_settings
    from hw.inputs import DoorInputs

    door = config.door
    if all(p is None for p in (door.contact_pin, door.exit_pin, door.tamper_pin, door.fire_pin)):
        return CheckResult("inputs", "skip", "no inputs configured (contact, exit, tamper, fire)",
                           "set door.contact_pin / exit_pin if the door has them")
    with DoorInputs(input_settings(door), factory, lambda _ev: None) as inputs:
        state = inputs.state()
    shown = ", ".join(f"{k}={'active' if v else 'idle'}" for k, v in state.items())
    return CheckResult("inputs", "pass", shown or "read",
                       "open the door / press exit and re-run to see the states change")


def check_scanner(config: Config, options: CheckOptions) -> CheckResult:
    from agent.runtime.check_scanner import check_camera, check_serial

    kind = config.scanner.kind
    if kind == "none":
        return CheckResult("scanner", "skip", "scanner.kind = none", "")
    if kind == "serial":
        return check_serial(config, options)
    return check_camera(config, options)


def check_broker(config: Config, options: CheckOptions) -> CheckResult:
    if config.mqtt is None:
        return CheckResult("broker", "skip", "no [mqtt] section: the gate runs offline",
                           "add [mqtt] url/ca_file/cert_file/key_file to sync with the centre")
    from agent.sync.broker import settings_from_config

    settings = settings_from_config(config.mqtt)
    try:
        socket.create_connection((settings.host, settings.port), timeout=3).close()
    except OSError as exc:
        return CheckResult("broker", "fail", f"{settings.url}: cannot connect ({exc})",
                           "check the network, the broker address and the firewall")
    return _mqtt_handshake(settings, options)


def _mqtt_handshake(settings: BrokerSettings, options: CheckOptions) -> CheckResult:
    """A real MQTT CONNECT through the daemon's own Link: same protocol (MQTT 5 with the
    gate's Maximum Packet Size), same TLS, same refusal hints."""
    from agent.gate.inbound import MAX_PACKET_BYTES
    from agent.sync.link import handshake

    result = handshake(settings, f"gate-agent-check-{uuid.uuid4().hex[:8]}",
                       options.broker_timeout_s, max_packet_bytes=MAX_PACKET_BYTES)
    if not result.accepted:
        return CheckResult("broker", "fail", f"{settings.url}: {result.reason}",
                           "check mqtt.ca_file / cert_file / key_file, this gate's "
                           "credentials and the broker's TLS setup and ACL")
    tls = "TLS" if settings.tls else "plain TCP"
    return CheckResult("broker", "pass", f"{settings.url}: connected ({tls})")


def check_revocations(config: Config) -> CheckResult:
    from agent.gate.gatekeeper import list_status
    from agent.store import RevocationStore
    from agent.store.recovery import read_recoveries

    max_age_h = config.policy.revocations_max_age_h
    mark = read_recoveries(config.state.dir).revocations_mark()
    try:
        store = RevocationStore(config.state.dir, read_only=True, min_version=mark)
    except GateError as exc:
        return CheckResult("revocations", "fail", str(exc),
                           "apply a list: gate-agent revocations apply FILE, or connect the broker")
    try:
        status = list_status(store, time.time(), max_age_h)
        issued, entries = store.issued_at, store.entries
    finally:
        store.close()
    version = status.version
    if version is None or issued is None:
        return CheckResult("revocations", "fail", "no revocation list installed",
                           "apply one (gate-agent revocations apply FILE) or connect to the "
                           "broker, which delivers the retained full list")
    age_h = (status.age_s or 0.0) / 3600
    detail = f"version {version}, {entries} entries, {age_h:.1f} h old"
    if status.state != "ok":
        return CheckResult("revocations", "fail",
                           detail + f", but this gate had version {mark}: downgraded or lost",
                           "connect to the broker (the gate asks for the full list) or apply "
                           "the current list with gate-agent revocations apply FILE")
    if status.stale:
        return CheckResult("revocations", "fail", detail + f" (older than {max_age_h:g} h)",
                           "connect to the broker or apply a fresh list")
    return CheckResult("revocations", "pass", detail)



def check_state(config: Config) -> CheckResult:
    """Recoveries and downgrades the daemon found, until ``gate-agent state clear``."""
    from agent.store.recovery import read_recoveries

    found = read_recoveries(config.state.dir)
    problems = [*found.unreadable, *(str(r["detail"]) for r in found.reports)]
    if found.lost:
        problems.append("entry seq ranges lost: "
                        + ", ".join(f"{a}-{b}" for a, b in found.lost))
    if not problems:
        return CheckResult("state", "pass", "no recovery or downgrade recorded")
    return CheckResult("state", "fail", "; ".join(problems)[:600],
                       "report the lost ranges to the centre, then clear with "
                       "gate-agent state clear (daemon stopped)")
