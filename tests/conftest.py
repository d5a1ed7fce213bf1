"""Shared test fixtures.

Components the product needs (zbar, the Mosquitto broker, a video codec) are required:
when one is missing a test skips on a developer machine but FAILS under ``CI=true``, so
a missing install step can never hide behind a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hw.pins import make_pin_factory

ROOT = Path(__file__).resolve().parent.parent
# Real QR photographs, part of the project (origin and licence in its NOTICE).
CORPUS = ROOT / "tests" / "data" / "zxing-qr"

# Shared fixtures living in their own modules (real Mosquitto broker, ...).
pytest_plugins = ["tests.broker", "tests.postgres", "tests.centre_support"]


def require(available: bool, what: str, install_hint: str) -> None:
    """Skip locally, fail in CI, when a required component is missing."""
    if available:
        return
    message = f"{what} is missing: {install_hint}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def factory() -> Iterator[Any]:
    """A fresh gpiozero MockFactory per test, reset and closed after it (no shared pins)."""
    f = make_pin_factory("mock")
    try:
        yield f
    finally:
        f.reset()
        f.close()
