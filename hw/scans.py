"""What every code source shares, frames or not: the scan callbacks and de-duplication.

Apart from hw.frames so that a serial scanner loads neither numpy nor OpenCV.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.core.events import Scan

OnCode = Callable[[str, str], None]
OnScan = Callable[[Scan], None]


class Deduper:
    """The same text seen again within ``window_s`` of its last sighting is one scan.

    The window slides while the code stays in view, so a phone held at the reader for
    ten seconds is one scan, not one every ``window_s``.
    """

    def __init__(self, window_s: float) -> None:
        self._window = window_s
        self._seen: dict[str, float] = {}

    def accept(self, text: str, now: float) -> bool:
        self._seen = {t: at for t, at in self._seen.items() if now - at < self._window}
        fresh = text not in self._seen
        self._seen[text] = now
        return fresh


def adapt_on_code(on_code: OnCode) -> OnScan:
    return lambda scan: on_code(scan.text, scan.method)
