"""The retained ``status`` message: birth, periodic updates, clean goodbye and last will.

The broker keeps the last one per gate, so the centre (and ``gatectl watch``) sees each
gate's state at any moment: online or not, and the controller's snapshot (revocation
list version and age, outbox backlog, clock state, door state, alarms).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from agent import __version__
from agent.core.timefmt import format_instant

log = logging.getLogger(__name__)

StatusSource = Callable[[], dict[str, Any]]


def status_payload(
    site: str,
    gate: str,
    *,
    online: bool,
    now: float,
    snapshot: StatusSource | None = None,
    reason: str | None = None,
) -> bytes:
    """JSON status; a failing snapshot still yields a status that says so."""
    body: dict[str, Any] = {}
    if snapshot is not None:
        try:
            body.update(snapshot())
        except Exception as exc:  # the status must go out even if the snapshot breaks
            log.warning("status snapshot failed: %s", exc)
            body["snapshot_error"] = type(exc).__name__
    body.update(
        {
            "online": online,
            "site": site,
            "gate": gate,
            "version": __version__,
            "ts": format_instant(now),
        }
    )
    if reason:
        body["reason"] = reason
    return json.dumps(body, separators=(",", ":"), default=str).encode("utf-8")


def will_payload(site: str, gate: str, connected_at: float | None = None) -> bytes:
    """What the broker publishes when the gate vanishes without saying goodbye.

    Set when the connection is made, so it can only say since when the gate was last
    connected (``connected_at``); the centre records when it saw the will arrive.
    """
    body: dict[str, Any] = {"online": False, "site": site, "gate": gate,
                            "version": __version__, "reason": "connection_lost"}
    if connected_at is not None:
        body["connected_at"] = format_instant(connected_at)
    return json.dumps(body, separators=(",", ":")).encode("utf-8")
