"""The issue's soak at its full size: 3 real gate-agent daemons (mock pins, serial
scanners on ptys fed couriers' signed presentations) and 50 simulated gates' real
outboxes, 20,000 events, 2 gate-centre processes on one share group (one SIGKILLed and
restarted mid-stream), 5 broker SIGKILLs: every event exactly once in the store, every
code fed to a daemon decided and granted, and every outbox empty (the daemons' by
``gate-agent outbox status --json``), on SQLite and PostgreSQL.

The size is the issue's, not a scaled one: the run is paced by the broker kills (4 s
each) rather than by the event count, and measured 34-37 s per store on the shared
2-core machine at a load of 2-4 (5,000 events: 34 s), so the default suite affords it.
scripts/soak-centre.sh runs it (or a bigger size) on its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.centre_soak import ok, soak


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_soak_every_event_exactly_once_through_broker_and_centre_kills(
        store: str, tmp_path: Path) -> None:
    result = soak(store, tmp_path, gates=50, daemons=3, events=20_000, daemon_events=500,
                  broker_kills=5)
    assert ok(result), result
    assert result["appended"] >= 20_000 and result["daemon_entries"] >= 1_500
