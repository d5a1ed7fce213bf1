"""A tiny sd_notify client: READY=1, STATUS=..., WATCHDOG=1, STOPPING=1 to systemd.

systemd (``Type=notify``) passes the address of a datagram socket in ``NOTIFY_SOCKET``;
one ``sendto`` per message is the whole protocol, so a dependency is not worth it. When
the variable is absent (a terminal, the tests, the demo) every call is a no-op, and a
send that fails is logged once and ignored: systemd's supervision must never take the
door controller down.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends notifications to the socket named by ``NOTIFY_SOCKET`` (if any)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # "@name" is a Linux abstract socket: the leading byte is NUL on the wire.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._warned = False
        watchdog_usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_s: float | None = (
            int(watchdog_usec) / 1_000_000 if watchdog_usec.isdigit() else None
        )

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; False when not under systemd or on error."""
        if not self._address:
            return False
        message = "\n".join(lines).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, self._address)
        except OSError as exc:
            if not self._warned:
                log.warning("sd_notify to %s failed: %s (continuing)", self._address, exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))
