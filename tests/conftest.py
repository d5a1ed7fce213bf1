"""Shared test fixtures.

Components the product needs (zbar, the Mosquitto broker, a video codec) are required:
when one is missing a test skips on a developer machine but FAILS under ``CI=true``, so
a missing install step can never hide behind a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus" / "zxing-qr"

# Shared fixtures living in their own modules (real Mosquitto broker, ...).
pytest_plugins = ["tests.broker"]


def require(available: bool, what: str, install_hint: str) -> None:
    """Skip locally, fail in CI, when a required component is missing."""
    if available:
        return
    message = f"{what} is missing: {install_hint}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
