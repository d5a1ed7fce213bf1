"""``gate-agent check``'s checklist as the running daemon sees it, for the installer page.

The terminal checklist opens the pins, the camera and a broker connection of its own;
inside the daemon those are already open (and must not be opened twice), so the items
that need hardware are answered from what the daemon reads: the scanner's counters, the
debounced inputs, the sync link, the controller's clock and list status. The relay item
never clicks from here: the page's relay test does that, recorded, through the
controller. Keys and the state folder are the terminal checks themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.runtime.check import check_keys, check_state_dir
from agent.runtime.checklist import CheckResult
from agent.runtime.web.live import LiveGate


def live_checks(gate: LiveGate) -> list[CheckResult]:
    """Every item, in the order of ``gate-agent check``; one broken item is a failed one."""
    config = gate.config
    status = gate.status()
    items: list[tuple[str, Callable[[], CheckResult]]] = [
        ("keys", lambda: check_keys(config)),
        ("state_dir", lambda: check_state_dir(config)),
        ("clock", lambda: _clock(status)),
        ("relay", lambda: CheckResult(
            "relay", "skip", f"GPIO{config.door.relay_pin}: use the relay test above",
            "press Relay test: one pulse, recorded in the entry log; listen for two clicks")),
        ("inputs", lambda: _inputs(gate)),
        ("scanner", lambda: _scanner(gate)),
        ("broker", lambda: _broker(gate, status)),
        ("revocations", lambda: _revocations(status, config.policy.revocations_max_age_h)),
    ]
    out = []
    for name, check in items:
        try:
            out.append(check())
        except Exception as exc:  # a broken item is a failed item, never a broken page
            out.append(CheckResult(name, "fail", f"{type(exc).__name__}: {exc}",
                                   "see the daemon's log (journalctl -u gate-agent)"))
    return out


def _clock(status: dict[str, Any]) -> CheckResult:
    clock = status.get("clock") or {}
    if clock.get("trusted"):
        return CheckResult("clock", "pass", f"trusted ({clock.get('clock', 'synchronised')})")
    return CheckResult("clock", "fail", f"not trusted ({clock.get('clock', 'unknown')})",
                       "enable NTP (timedatectl set-ntp true) and let it reach a server, or "
                       "connect the broker for the centre's signed time; until then "
                       "policy.on_untrusted_clock decides scans")


def _inputs(gate: LiveGate) -> CheckResult:
    state = gate.inputs()
    if not state:
        return CheckResult("inputs", "skip", "no inputs configured (contact, exit, tamper, fire)",
                           "set door.contact_pin / exit_pin if the door has them")
    shown = ", ".join(f"{k}={'active' if v else 'idle'}" for k, v in state.items())
    return CheckResult("inputs", "pass", shown,
                       "open the door / press exit: the inputs above change as you do")


def _scanner(gate: LiveGate) -> CheckResult:
    status = gate.scanner()
    if status is None:
        return CheckResult("scanner", "skip", "scanner.kind = none", "")
    kind = status.get("method") or gate.config.scanner.kind
    state = status.get("state")
    if state not in ("running", "starting"):
        return CheckResult("scanner", "fail", f"{kind} scanner {state}: {status.get('last_error')}",
                           "check the cable and [camera] device / [serial] port; the daemon "
                           "keeps reopening it")
    frames = status.get("frames", 0)
    codes = status.get("codes", 0)
    detail = (f"{kind} running: {frames} frames, {codes} codes read" if "frames" in status
              else f"{kind} running: {codes} codes read")
    hint = ("hold the test card at the reader: the preview outlines it and shows its pixels "
            "per module (4 or more)" if not codes else "")
    return CheckResult("scanner", "pass", detail, hint)


def _broker(gate: LiveGate, status: dict[str, Any]) -> CheckResult:
    if gate.config.mqtt is None:
        return CheckResult("broker", "skip", "no [mqtt] section: the gate runs offline",
                           "add [mqtt] url/ca_file/cert_file/key_file to sync with the centre")
    url = gate.config.mqtt.url
    if status.get("broker") == "connected":
        return CheckResult("broker", "pass", f"{url}: connected")
    return CheckResult("broker", "fail", f"{url}: {status.get('broker', 'not connected')}",
                       "check the network, the broker address, the firewall and "
                       "mqtt.ca_file / cert_file / key_file")


def _revocations(status: dict[str, Any], max_age_h: float) -> CheckResult:
    rev = status.get("revocations") or {}
    version, age_s = rev.get("version"), rev.get("age_s")
    if version is None:
        return CheckResult("revocations", "fail", "no revocation list installed",
                           "connect to the broker, which delivers the retained full list, or "
                           "gate-agent revocations apply FILE")
    detail = f"version {version}, {(age_s or 0) / 3600:.1f} h old"
    if rev.get("stale"):
        return CheckResult("revocations", "fail", detail + f" (older than {max_age_h:g} h)",
                           "connect to the broker or apply a fresh list")
    return CheckResult("revocations", "pass", detail)
