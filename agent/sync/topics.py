"""MQTT topic names (root ``gate/v1``), in one place so gate and gatectl agree.

Per gate ``gate/v1/{site}/{gate}/``: ``events`` (QoS 1 entry log) and ``events/ack`` (the centre's
acknowledgement, when ``[mqtt] ack = "centre"``), ``status``
(retained; birth and last will), ``cmd`` and ``cmd/result``, ``resync`` (the gate asks
the centre for a full revocation list), ``time/request`` (the gate asks for signed time
with a nonce) and ``time`` (the centre's answer, carrying that nonce).
Per site: ``gate/v1/{site}/cmd`` (commands for every gate of the site).
Centre-wide: ``revocations/full`` (retained), ``revocations/delta`` and ``time``.
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "gate/v1"
REVOCATIONS_FULL = f"{ROOT}/revocations/full"
REVOCATIONS_DELTA = f"{ROOT}/revocations/delta"
TIME = f"{ROOT}/time"


@dataclass(frozen=True)
class GateTopics:
    site: str
    gate: str

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.site}/{self.gate}"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def events_ack(self) -> str:
        return f"{self.base}/events/ack"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def cmd(self) -> str:
        return f"{self.base}/cmd"

    @property
    def site_cmd(self) -> str:
        return f"{ROOT}/{self.site}/cmd"

    @property
    def cmd_result(self) -> str:
        return f"{self.base}/cmd/result"

    @property
    def resync(self) -> str:
        return f"{self.base}/resync"

    @property
    def time_request(self) -> str:
        """The gate asks for signed time: JSON ``{"nonce": 32 hex, "ts", "clock"}``."""
        return f"{self.base}/time/request"

    @property
    def time(self) -> str:
        """The centre's signed answer to this gate's time request (carries its nonce)."""
        return f"{self.base}/time"

    def inbound_kinds(self) -> dict[str, str]:
        """Subscribed topic -> ``Inbound.kind`` for everything the gate listens to."""
        return {
            REVOCATIONS_FULL: "revocations_full",
            REVOCATIONS_DELTA: "revocations_delta",
            TIME: "time",
            self.time: "time",
            self.cmd: "cmd",
            self.site_cmd: "cmd",
        }


def client_id(site: str, gate: str) -> str:
    """One stable id per gate, so a restarted agent replaces its stale connection."""
    return f"gate-{site}-{gate}"


def watch_filters(target: str | None) -> list[str]:
    """Topic filters for ``gatectl watch [SITE[/GATE]]`` (events, status, command results,
    and gates asking for a full revocation list).

    ``SITE/*`` is every gate of a site, as for commands. ValueError for any other shape:
    a wildcard or a third level would watch something else, or nothing, silently.
    """
    if not target:
        site, gate = "+", "+"
    elif "/" in target:
        site, _, gate = target.partition("/")
    else:
        site, gate = target, "+"
    if gate == "*":
        gate = "+"
    if target and (not site or not gate or "/" in gate or set("+#*") & set(site)
                   or (gate != "+" and set("+#*") & set(gate))):
        raise ValueError(f"target {target!r} is not SITE, SITE/GATE or SITE/*")
    base = f"{ROOT}/{site}/{gate}"
    return [f"{base}/events", f"{base}/status", f"{base}/cmd/result", f"{base}/resync"]
