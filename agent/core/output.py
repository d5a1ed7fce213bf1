"""JSON-lines output shared by every command and the demo: one object per line."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO


def emit_json(obj: dict[str, Any], out: TextIO | None = None) -> None:
    """One JSON object per line, flushed so a pipe reader sees it at once."""
    stream = out or sys.stdout
    stream.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")
    stream.flush()
