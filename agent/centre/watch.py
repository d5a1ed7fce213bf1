"""``gatectl watch``: how it shows what gates publish (one line, or one JSON object, per
message on events, status, resync and command-result topics), and the loop that keeps
watching across broker restarts."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from typing import Any

from agent.centre.session import CtlSession
from agent.core.backoff import Backoff
from agent.core.timefmt import format_instant
from agent.sync.broker import BrokerSettings
from agent.sync.link import LinkError


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
        "reason": body.get("reason"),
        "connected_at": body.get("connected_at") if not body.get("online") else None,
    }
    return " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, ""))


def follow(
    settings: BrokerSettings,
    filters: list[str],
    on_message: Callable[[str, bytes, bool], None],
    on_change: Callable[[str], None],
    should_stop: Callable[[], bool],
    *,
    backoff: Backoff | None = None,
    poll_s: float = 0.5,
) -> None:
    """Hand every message on ``filters`` to ``on_message`` until ``should_stop()``.

    A broker that goes away is said (``on_change``), reconnected with backoff and
    subscribed again, so a watch left running across a broker restart is never deaf
    without saying so. Only the first connection failing raises (LinkError).
    """
    backoff = backoff or Backoff(0.5, 10.0)
    first = True
    while not should_stop():
        session = CtlSession(settings, "gatectl-watch")
        try:
            session.__enter__()
        except LinkError as exc:
            if first:
                raise
            on_change(f"broker still unreachable ({exc}); retrying")
            _sleep(backoff.next_delay(), should_stop)
            continue
        try:
            session.link.subscribe(filters)
            if not first:
                on_change(f"broker {settings.url} is back: watching again")
            first = False
            backoff.reset()
            lost = _pump(session, on_message, should_stop, poll_s)
        finally:
            session.__exit__()
        if lost is None:
            return
        on_change(f"lost the broker {settings.url} ({lost}): reconnecting")
        _sleep(backoff.next_delay(), should_stop)


def _pump(session: CtlSession, on_message: Callable[[str, bytes, bool], None],
          should_stop: Callable[[], bool], poll_s: float) -> str | None:
    """Messages until the connection is lost (its reason) or we are told to stop (None)."""
    while not should_stop():
        try:
            signal = session.signals.get_nowait()
        except queue.Empty:
            signal = None
        if signal is not None and signal.kind == "lost":
            return signal.reason or "connection lost"
        try:
            topic, payload, retained = session.messages.get(timeout=poll_s)
        except queue.Empty:
            continue
        on_message(topic, payload, retained)
    return None


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not should_stop() and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
