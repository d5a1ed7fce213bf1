"""Parsing of the times and durations people type on command lines and in config."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from agent.core.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, *, require_unit: bool = False) -> float:
    """``"90s"``, ``"10m"``, ``"12h"``, ``"7d"`` or plain seconds -> seconds.

    ``require_unit`` refuses a bare number where people think in hours or minutes
    (a credential's ``--ttl 12`` would otherwise be twelve seconds).
    """
    match = _DURATION.match(text)
    if not match or (require_unit and not match.group(2)):
        raise UsageError(
            f"duration {text!r} is not understood: use a number with s, m, h or d, e.g. 10m or 12h"
        )
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


def parse_instant(text: str, *, require_zone: bool = False) -> float:
    """ISO 8601 -> Unix seconds. A time without an offset is taken as UTC, unless
    ``require_zone``: command lines refuse it, since a person typing local time there
    would silently shift a revocation cut-off or a validity start by the zone's offset."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"time {text!r} is not ISO 8601: "
            "use e.g. 2026-11-27T09:30:00Z or 2026-11-27T17:30+08:00"
        ) from None
    if moment.tzinfo is None:
        if require_zone:
            raise UsageError(
                f"time {text!r} has no time zone: add Z for UTC or the offset, "
                "e.g. 2026-11-27T09:30:00Z or 2026-11-27T17:30+08:00"
            )
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_instant(ts: float) -> str:
    """Unix seconds -> ISO 8601 UTC with a ``Z``, to the millisecond."""
    moment = datetime.fromtimestamp(ts, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
