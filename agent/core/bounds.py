"""Upper and lower bounds of every signed and every configured number.

A value outside these bounds is refused where it is parsed (signed documents, config,
gatectl's arguments) with a reason, and a value restored from state that is outside them
is damage: alarmed and ignored, never a crash at start. They are also the values the
centre's tools check before signing, so staff cannot send what a gate refuses.
"""

from __future__ import annotations

import math

DAY_S = 86_400
# Unix seconds: nothing a gate handles lies before 2020 or after 2100. Python's datetime
# stops at year 9999; a value in microseconds or from a typo lands far past both.
MIN_TIME = 1_577_836_800  # 2020-01-01T00:00:00Z
MAX_TIME = 4_102_444_800  # 2100-01-01T00:00:00Z
MAX_MODE_S = 30 * DAY_S  # a commanded mode lasts at most this long
MAX_VERSION = 2**53 - 1  # revocation list versions (JSON-safe integers)
MAX_SEQ = 2**53 - 1  # per-gate event sequence numbers
MAX_LIST_ENTRIES = 3_000_000  # entries of one full revocation list (fits MAX_LIST_BYTES)
MAX_DELTA_ENTRIES = 200_000  # additions plus removals of one delta
# A list signed this far in the future of the gate's decision clock is refused: its age
# would be negative and it would never go stale.
LIST_FUTURE_S = DAY_S

# ---- payload sizes in bytes, checked before anything is copied or decoded --------------
MIB = 1024 * 1024
# A signed full list read from a file (``gate-agent revocations apply FILE``).
MAX_LIST_BYTES = 32 * MIB
# What ``gate-agent revocations apply FILE`` reads with the compact reader
# (agent.protocol.revstream: ~16 bytes of memory an id, not ~300): 10M ids fit 512 MB.
MAX_FILE_LIST_BYTES = 224 * MIB
MAX_FILE_LIST_ENTRIES = 12_000_000
# A full list over MQTT. paho holds three copies of a packet while it decodes one, ~3.8
# once a few arrived in a row (glibc keeps freed chunks), so this cap, not the gate, is
# what keeps a forged list within +32 MB of the idle daemon (measured +24 MB; see
# docs/decisions.md). It holds ~700,000 8-byte credential ids or ~390,000 courier
# cut-offs; a bigger list is applied from its file at each gate.
MQTT_LIST_BYTES = 6 * MIB
MAX_DELTA_BYTES = 4 * MIB  # deltas are a day's changes; a bigger change is a full list
MAX_COMMAND_BYTES = 4096
MAX_TIME_BYTES = 512
MAX_ACK_BYTES = 256 * 1024  # the centre's events/ack: a list of seqs
# What an MQTT PUBLISH holds besides its payload: fixed header, topic (ids of up to 64
# characters), packet id, properties. The gate's CONNECT states its Maximum Packet Size
# as its largest payload cap plus this, so the broker never forwards anything bigger.
MQTT_HEADER_ROOM = 64 * 1024


def time_problem(value: object, what: str) -> str | None:
    """None when ``value`` is a Unix time (int or float seconds) within [MIN_TIME, MAX_TIME)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{what} is not a number of Unix seconds"
    if not (math.isfinite(value) and MIN_TIME <= value < MAX_TIME):
        return (f"{what} {value!r} is not a time between 2020 and 2100 "
                "(Unix seconds expected: was it milliseconds or microseconds?)")
    return None


def in_time_range(value: object) -> bool:
    return time_problem(value, "time") is None
