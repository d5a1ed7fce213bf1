"""How ``gatectl watch`` shows what gates publish: one line (or one JSON object) per
message on events, status, resync and command-result topics."""

from __future__ import annotations

import json
import time
from typing import Any

from agent.core.timefmt import format_instant


def describe_message(topic: str, payload: bytes, retained: bool) -> tuple[dict[str, Any], str]:
    """The message as a JSON object for ``--json`` and as one line for a terminal."""
    parts = topic.split("/")
    site, gate = (parts[2], parts[3]) if len(parts) > 3 else ("?", "?")
    kind = {"events": "event", "status": "status", "resync": "resync"}.get(parts[-1], "result")
    try:
        body: Any = json.loads(payload) if payload else {}
    except ValueError:
        body = {"raw": payload[:200].decode("utf-8", "replace")}
    if not isinstance(body, dict):
        body = {"value": body}
    record = {"type": kind, "site": site, "gate": gate, "retained": retained, **body}
    where = f"{site}/{gate}"
    ts = body.get("ts") or format_instant(time.time())
    if kind == "event":
        verdict = "GRANTED" if body.get("granted") else "denied"
        line = (f"{ts} {where} #{body.get('seq')} {body.get('kind', 'scan')} {verdict} "
                f"{body.get('reason')} sub={body.get('sub')} method={body.get('method')} "
                f"door={body.get('door')}")
    elif kind == "status":
        state = "online" if body.get("online") else "OFFLINE"
        line = f"{ts} {where} status {state} {_status_extras(body)}".rstrip()
    elif kind == "resync":
        line = (f"{ts} {where} asks for a full revocation list: {body.get('reason')} "
                f"(has version {body.get('have_version')})")
    else:
        line = (f"{ts} {where} result {body.get('id')} "
                f"{'ok' if body.get('ok') else 'refused'} {body.get('reason')}")
    return record, line


def _status_extras(body: dict[str, Any]) -> str:
    """The status fields staff look at, as words (the payload nests some of them)."""
    revocations, clock = body.get("revocations"), body.get("clock")
    fields = {
        "door": body.get("door"),
        "mode": body.get("mode"),
        "revocations": revocations.get("version") if isinstance(revocations, dict) else None,
        "backlog": body.get("backlog"),
        "clock": clock.get("clock") if isinstance(clock, dict) else clock,
        "alarms": ",".join(body["alarms"]) if isinstance(body.get("alarms"), dict) else None,
    }
    return " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, ""))
