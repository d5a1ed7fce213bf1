"""Typed events that threads put on the controller's queue (the only way in)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Scan:
    """One scan holds one code: when a frame holds several, ``text`` is the first in
    decoder order and ``others`` the rest, recorded as ignored (``extra_code``) without
    being verified, so their replay keys stay unused."""

    text: str
    method: str  # camera | serial | sim | verify
    at: float  # wall-clock Unix seconds when the code was read
    mono: float  # monotonic seconds when read, for scan-to-unlock latency
    others: tuple[str, ...] = ()


@dataclass(frozen=True)
class DoorInput:
    kind: str  # contact_open | contact_closed | exit | tamper | tamper_clear | fire | fire_clear
    at: float


@dataclass(frozen=True)
class Inbound:
    """A message from the centre, still unverified bytes."""

    kind: str  # revocations_full | revocations_delta | cmd | time
    payload: bytes
    retained: bool = False


@dataclass(frozen=True)
class LocalOpen:
    """One pulse asked for on the gate itself (the installer page's relay test).

    Handled like the centre's open command (``Controller.open_once``: recorded, then one
    pulse, refused in lockdown); ``reply(done)`` is called on the controller thread and
    must only hand off.
    """

    cause: str  # the entry row's "command", e.g. "relay_test"
    reply: Callable[[bool], None] | None = None


@dataclass(frozen=True)
class Stop:
    reason: str
