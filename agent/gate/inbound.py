"""The controller's two queues: inbound work separated by kind and trust.

Courier scans and door inputs (hardware threads) go to the *local* queue, which MQTT
can never fill. Messages from the centre go to the *centre* queue only after
:class:`Admission` let them in on the thread that reads the broker (the sync worker,
which runs paho's network loop): a size cap per kind, then the full
signature check (type, known ops kid, Ed25519 over the bytes in place), whatever the
size, so a forged list is gone before the next packet is read and two never coexist.
Identical payloads already waiting are not queued twice, so replaying one genuine
message cannot fill a queue either.

The caps (agent.core.bounds) are also what the gate states to the broker: its MQTT 5
CONNECT carries Maximum Packet Size = the largest cap + header room (``MAX_PACKET_BYTES``),
so a broker never forwards anything bigger (Mosquitto drops it for this gate, and the
gate's version gap or unknown list makes it ask for a resync).

The centre queue has a few slots per kind and a byte bound over all of them. A signed
message that found no room is counted per kind (status ``inbound.dropped``); a dropped
revocation list makes the controller ask the centre for a full list (resync). Garbage
that fails admission is counted too (``inbound.refused``) and costs nothing else.

The controller serves the local queue first. After :meth:`Inbox.close` (shutdown) the
queues take nothing new; what was queued before is still handed out, then ``Stop``.
The installer page's relay test (``LocalOpen``) is local work too.
Imported by the controller and the daemon only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import Any

from agent.core.bounds import (
    MAX_COMMAND_BYTES,
    MAX_DELTA_BYTES,
    MAX_TIME_BYTES,
    MIB,
    MQTT_HEADER_ROOM,
    MQTT_LIST_BYTES,
)
from agent.core.errors import ProtocolError
from agent.core.events import DoorInput, Inbound, LocalOpen, Scan, Stop
from agent.protocol.command import COMMAND_TYPE
from agent.protocol.keys import KeyRing
from agent.protocol.revocation import DOC_TYPE
from agent.protocol.signed_doc import authenticate
from agent.protocol.timemsg import TIME_TYPE

LocalEvent = Scan | DoorInput | LocalOpen  # anything else a bug put here fails in the loop
Item = LocalEvent | Inbound | Stop

# Largest payload per kind, checked before anything is copied or queued.
CAPS: dict[str, int] = {
    "revocations_full": MQTT_LIST_BYTES,  # a bigger list is applied from its file
    "revocations_delta": MAX_DELTA_BYTES,
    "cmd": MAX_COMMAND_BYTES,
    "time": MAX_TIME_BYTES,
}
TYPES = {"revocations_full": DOC_TYPE, "revocations_delta": DOC_TYPE, "cmd": COMMAND_TYPE,
         "time": TIME_TYPE}
# Order the controller serves the centre queue in, and the slots of each kind.
SLOTS = {"revocations_full": 2, "revocations_delta": 32, "cmd": 32, "time": 4,
         "connected": 1}
# The sync worker's own signal that a broker accepted the connection (no broker message
# maps to this kind): empty, never signed, one slot.
LINK_KINDS = frozenset({"connected"})
CENTRE_MAX_BYTES = MQTT_LIST_BYTES + 8 * MIB  # one full list and the small ones
# The gate's MQTT 5 Maximum Packet Size: nothing bigger than the largest cap is sent to it.
MAX_PACKET_BYTES = max(CAPS.values()) + MQTT_HEADER_ROOM
LOCAL_SLOTS = 1024
RECENT_DIGESTS = 256
RESYNC_EVERY_S = 10.0  # a lost list asks for a resync at most this often
# Refusals of a command that are answered on cmd/result (rate limited): what staff with a
# wrong key or a damaged file would otherwise only see as a timeout.
REPORTED_REFUSALS = frozenset({"oversize", "malformed", "unknown_key", "bad_signature",
                               "unsupported_version"})


class Admission:
    """Size cap and authentication of one centre payload; runs on the broker-reading thread."""

    def __init__(self, keyring: KeyRing) -> None:
        trusted = keyring.keys()  # a KeyRing, not a dict: keys() lists TrustedKey
        self._ops = {k.kid: k.public for k in trusted if k.role == "ops"}

    def check(self, ev: Inbound) -> str | None:
        """None when ``ev`` may take a slot, else why not (one short reason)."""
        if ev.kind in LINK_KINDS:
            return None if not ev.payload else "malformed"
        cap = CAPS.get(ev.kind)
        if cap is None:
            return f"unknown kind {ev.kind!r}"
        size = len(ev.payload)
        if size > cap:
            return f"oversize: {size} bytes, at most {cap} on {ev.kind}"
        try:
            authenticate(ev.payload, self._ops, TYPES[ev.kind], cap)
        except ProtocolError as exc:
            return exc.reason
        return None


class RefusalReports:
    """At most ``burst`` refusal results per ``per_s`` seconds: staff who sign with the
    wrong key still see why, and a flood of garbage commands is not echoed back."""

    def __init__(self, burst: int = 3, per_s: float = 10.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._burst = burst
        self._per_s = per_s
        self._monotonic = monotonic
        self._tokens = float(burst)
        self._at = monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = self._monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._burst
                               / self._per_s)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class Inbox:
    """Local and centre queues behind one lock; ``get`` serves local work first."""

    def __init__(
        self, admission: Admission | None, *, local_slots: int = LOCAL_SLOTS,
        centre_max_bytes: int = CENTRE_MAX_BYTES, monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._admission = admission
        self._cond = threading.Condition()
        self._local: deque[LocalEvent] = deque()
        self._local_slots = local_slots
        self._centre: dict[str, deque[tuple[Inbound, bytes]]] = {k: deque() for k in SLOTS}
        self._queued_digests: Counter[bytes] = Counter()
        self._recent: OrderedDict[bytes, None] = OrderedDict()
        self._centre_bytes = 0
        self._centre_max_bytes = centre_max_bytes
        self._closed = False
        self._stop: Stop | None = None
        self._monotonic = monotonic
        self._lists_lost_at: float | None = None
        self._last_resync: float | None = None
        self.local_dropped = 0
        self.dropped: Counter[str] = Counter()  # signed messages without room, per kind
        self.refused: Counter[str] = Counter()  # failed admission, per reason
        self.duplicates = 0

    # ---- putting (any thread) ---------------------------------------------------------

    def put_local(self, ev: LocalEvent) -> bool:
        with self._cond:
            if self._closed or len(self._local) >= self._local_slots:
                self.local_dropped += 1
                return False
            self._local.append(ev)
            self._cond.notify()
            return True

    def put_centre(self, ev: Inbound) -> str | None:
        """Admit (broker-reading thread: size, then signature) and queue; None when queued, else
        why not: a refusal reason (``oversize``, ``malformed``, ``unknown_key``,
        ``bad_signature``...), ``duplicate`` or ``no_room``."""
        if self._admission is not None:
            refusal = self._admission.check(ev)
            if refusal is not None:
                reason = refusal.split(":")[0]
                with self._cond:
                    self.refused[reason] += 1
                return reason
        digest = hashlib.sha256(ev.payload).digest()
        with self._cond:
            if digest in self._queued_digests or (ev.kind == "cmd" and digest in self._recent):
                self.duplicates += 1
                return "duplicate"
            lane = self._centre.get(ev.kind)
            size = len(ev.payload)
            if (self._closed or lane is None or len(lane) >= SLOTS[ev.kind]
                    or self._centre_bytes + size > self._centre_max_bytes):
                self.dropped[ev.kind] += 1
                if ev.kind.startswith("revocations"):
                    self._lists_lost_at = self._lists_lost_at or self._monotonic()
                return "no_room"
            lane.append((ev, digest))
            self._queued_digests[digest] += 1
            self._centre_bytes += size
            self._cond.notify()
            return None

    def close(self, stop: Stop) -> None:
        """Take nothing new; ``get`` returns ``stop`` once the queues are empty."""
        with self._cond:
            self._closed = True
            self._stop = stop
            self._cond.notify()

    # ---- taking (controller thread) ------------------------------------------------------

    def get(self, timeout: float) -> Item | None:
        """Local work first, then the centre's by kind; None after ``timeout``."""
        with self._cond:
            item = self._take()
            if item is None:
                self._cond.wait(timeout)
                item = self._take()
            return item

    def _take(self) -> Item | None:
        if self._local:
            return self._local.popleft()
        for lane in self._centre.values():
            if lane:
                ev, digest = lane.popleft()
                self._centre_bytes -= len(ev.payload)
                self._queued_digests[digest] -= 1
                if not self._queued_digests[digest]:
                    del self._queued_digests[digest]
                self._recent[digest] = None
                while len(self._recent) > RECENT_DIGESTS:
                    self._recent.popitem(last=False)
                return ev
        return self._stop

    def empty(self) -> bool:
        with self._cond:
            return not self._local and not any(self._centre.values())

    def resync_due(self) -> bool:
        """True once after a revocation list was dropped (at most every RESYNC_EVERY_S)."""
        with self._cond:
            if self._lists_lost_at is None:
                return False
            now = self._monotonic()
            if self._last_resync is not None and now - self._last_resync < RESYNC_EVERY_S:
                return False
            self._lists_lost_at = None
            self._last_resync = now
            return True

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {
                "local_queued": len(self._local),
                "local_dropped": self.local_dropped,
                "centre_queued": sum(len(lane) for lane in self._centre.values()),
                "centre_bytes": self._centre_bytes,
                "dropped": dict(self.dropped),
                "refused": dict(self.refused),
                "duplicates": self.duplicates,
            }
