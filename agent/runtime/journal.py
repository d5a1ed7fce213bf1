"""Daemon logging to stderr in the form journald understands.

Under systemd (``JOURNAL_STREAM`` set, i.e. stderr is connected to the journal) each line
starts with an sd-daemon ``<N>`` priority prefix, so ``journalctl -p warning`` filters by
level and journald adds its own timestamp. On a terminal the lines carry a time and a
plain level name instead. journald is for operators; the audit record is the entry log.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

# syslog priorities (sd-daemon(3)): 3 err, 4 warning, 5 notice, 6 info, 7 debug.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``; a traceback stays in the same record, one prefix per line."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_PRIORITY.get(record.levelno, 6)}>"
        text = super().format(record)
        return "\n".join(prefix + line for line in text.splitlines())


def under_journald(environ: Mapping[str, str] | None = None) -> bool:
    """True when systemd connected our stderr to the journal."""
    env = os.environ if environ is None else environ
    return bool(env.get("JOURNAL_STREAM"))


def configure_logging(
    verbose: bool = False,
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Replace the root handlers with one stderr handler in the right form."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if under_journald(environ):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
