"""The entry record: what one row of the entry log (and one MQTT ``events`` payload) says.

The schema of docs/architecture.md "Event record" as code. ``id`` and ``seq`` are given
by the entry log when the row is written; everything else is built here, so no caller
extends a dict by hand and every row of a kind carries the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from agent.core.timefmt import format_instant

Kind = Literal["scan", "exit", "alarm", "command", "mode", "rate_limit", "error"]
Method = Literal["camera", "serial", "sim", "remote", "exit", "input", "summary"]
DoorAction = Literal["unlocked", "locked", "none"]


@dataclass(frozen=True)
class EntryRecord:
    """One decision or happening at the gate, before the entry log numbers it.

    ``extra`` holds the fields only some kinds carry (``alarm``/``detail``,
    ``command``/``cmd_id``, ``mode``/``until``, ``suppressed``/``reasons``,
    ``after_seq``/``detail``); build records with the constructors below.
    """

    kind: Kind
    at: float  # decision clock, Unix seconds
    granted: bool
    reason: str
    method: str
    door: DoorAction
    sub: str | None = None
    cti: str | None = None
    clock_trusted: bool | None = None  # scans of a gate with a timekeeper
    extra: dict[str, Any] = field(default_factory=dict)

    def to_event(self, site: str, gate: str) -> dict[str, Any]:
        """The wire form (without ``id``/``seq``, which the entry log assigns)."""
        event: dict[str, Any] = {
            "ts": format_instant(self.at), "site": site, "gate": gate, "kind": self.kind,
            "granted": self.granted, "reason": self.reason, "sub": self.sub, "cti": self.cti,
            "method": self.method, "door": self.door,
        }
        if self.clock_trusted is not None:
            event["clock_trusted"] = self.clock_trusted
        event.update(self.extra)
        return event


def scan(at: float, *, granted: bool, reason: str, sub: str | None, cti: str | None,
         method: str, door: DoorAction, clock_trusted: bool | None = None,
         clock: str | None = None) -> EntryRecord:
    """``clock``: the decision clock's state (synchronised, centre, holdover, rtc,
    untrusted), so the centre sees which scans were judged on an untrusted clock."""
    extra = {"clock": clock} if clock is not None else {}
    return EntryRecord("scan", at, granted, reason, method, door, sub, cti, clock_trusted,
                       extra)


def exit_pressed(at: float, *, door: DoorAction) -> EntryRecord:
    return EntryRecord("exit", at, True, "ok", "exit", door)


def alarm(at: float, kind: str, detail: str, *, door: DoorAction) -> EntryRecord:
    return EntryRecord("alarm", at, False, kind, "input", door,
                       extra={"alarm": kind, "detail": detail})


def command(at: float, name: str, *, granted: bool, reason: str, door: DoorAction,
            cmd_id: str | None = None) -> EntryRecord:
    extra: dict[str, Any] = {"command": name}
    if cmd_id:
        extra["cmd_id"] = cmd_id
    return EntryRecord("command", at, granted, reason, "remote", door, extra=extra)


def mode_change(at: float, mode: str, until: float | None, cause: str) -> EntryRecord:
    return EntryRecord("mode", at, False, cause, "remote", "none", extra={
        "mode": mode, "until": format_instant(until) if until else None})


def rate_limit_summary(at: float, suppressed: int, reasons: dict[str, int]) -> EntryRecord:
    return EntryRecord("rate_limit", at, False, "rate_limited", "summary", "none",
                       extra={"suppressed": suppressed, "reasons": dict(reasons)})


def error_after(at: float, after_seq: int | None, detail: str, *, method: str) -> EntryRecord:
    """A failure after a scan's row was written: points at that row, never a second scan."""
    return EntryRecord("error", at, False, "internal_error", method, "locked",
                       extra={"after_seq": after_seq, "detail": detail[:200]})
