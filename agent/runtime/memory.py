"""Give freed big buffers back to the OS at once (glibc only; a no-op elsewhere).

glibc serves allocations above its mmap threshold with their own mappings, returned to
the OS when freed, but after the first such free it raises the threshold up to 32 MiB, so
later payloads of a few MiB to 32 MiB (revocation lists, an attacker's junk) come from the
heap and stay resident after they are freed (measured: +82 MB held after one refused 20 MB
list). Pinning the threshold keeps it at 1 MiB: RSS falls back once a big message is gone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt(3); setting it also disables the dynamic adjustment
THRESHOLD_BYTES = 1024 * 1024


def pin_mmap_threshold(threshold: int = THRESHOLD_BYTES) -> bool:
    """True when glibc took the setting; never raises."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    try:
        return bool(mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, ctypes.ArgumentError):  # pragma: no cover - exotic libc
        log.debug("mallopt(M_MMAP_THRESHOLD) failed")
        return False
