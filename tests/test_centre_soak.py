"""The issue's soak at its size: 50 gates' real outboxes, 20,000 events, 2 gate-centre
processes on one share group (one SIGKILLed and restarted), 5 broker SIGKILLs: every
event exactly once in the store and every outbox empty, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.centre_soak import ok, soak


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_soak_every_event_exactly_once_through_broker_and_centre_kills(
        store: str, tmp_path: Path) -> None:
    result = soak(store, tmp_path)
    assert ok(result), result
