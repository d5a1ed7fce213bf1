"""The small interfaces ``agent/`` drives and ``hw/`` (or a test fake) implements.

``agent/`` never imports gpiozero, cv2 or serial: the daemon's composition root builds
the ``hw`` objects and hands them in as these protocols.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from agent.core.events import Scan
from agent.core.reasons import DenialClass


class Door(Protocol):
    """The lock relay. Starts locked; every release is a pulse that ends by itself."""

    def lock(self) -> None:
        """Drive the relay to its locked level now, cancelling any pulse or hold."""

    def pulse(self, seconds: float) -> None:
        """Release for ``seconds``; a pulse during a pulse re-arms the close."""

    def hold_unlocked(self) -> None:
        """Release until :meth:`lock` (free mode, fire alarm)."""

    @property
    def unlocked(self) -> bool: ...

    def close(self) -> None:
        """Lock and release the pin; safe to call twice."""


class Indicators(Protocol):
    """LEDs and buzzer; patterns are data chosen by the denial class."""

    def show(self, outcome: DenialClass) -> None: ...

    def close(self) -> None: ...


class CodeSource(Protocol):
    """A scanner thread: calls ``on_code(text, method)`` for each new code read.

    ``method`` is ``"camera"``, ``"serial"`` or ``"sim"``. The callback must only hand
    off (put an event on the controller's queue). ``start_scans`` hands over whole
    :class:`Scan` events instead (``mono`` = when the frame holding the code was taken).
    """

    def start(self, on_code: Callable[[str, str], None]) -> None: ...

    def start_scans(self, on_scan: Callable[[Scan], None]) -> None: ...

    def stop(self, timeout: float = 2.0) -> None: ...

    def status(self) -> dict[str, object]: ...

    @property
    def finished(self) -> threading.Event:
        """Set once a finite source (a clip) has played and decoded its last frame."""
        ...
