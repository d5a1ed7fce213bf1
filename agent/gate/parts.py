"""What the controller is built from: its parts and the interfaces they must offer.

The daemon (or a test) builds the real stores and drivers and hands them in here; the
controller and the handlers of centre messages see them only through these protocols.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.core.clock import Clock
from agent.core.config import Config
from agent.core.events import Inbound
from agent.core.ports import Door, Indicators
from agent.gate.modes import MetaLike
from agent.gate.recorder import EntryLogPort
from agent.gate.timekeeper import Timekeeper
from agent.protocol.keys import KeyRing
from agent.protocol.revocation import RevocationList
from agent.protocol.revstream import CompactList

Observer = Callable[[dict[str, Any]], None]
InboundHandler = Callable[[Inbound], None]


class Requeue(Protocol):
    def requeue(self, first: int, last: int) -> tuple[int, int]: ...


class CommandSync(Protocol):
    """The link to the centre as the gate's logic uses it (agent.sync.service.SyncService)."""

    def notify(self) -> None: ...

    def publish_result(self, cmd_id: str, ok: bool, reason: str, detail: str = "") -> None: ...

    def request_resync(self, reason: str, have_version: int | None = None) -> None: ...

    def publish_status_now(self) -> None: ...


class RevocationPort(Protocol):
    version: int | None
    issued_at: int | None

    @property
    def state(self) -> str: ...

    def is_revoked(self, cti: str, sub: str, iat: int) -> bool: ...

    def apply(self, lst: RevocationList | CompactList) -> None: ...

    @property
    def compaction_due(self) -> bool: ...

    def compact(self) -> None: ...

    def problems(self) -> list[str]: ...


class ReplayPort(Protocol):
    def seen(self, key: str) -> bool: ...

    def refuses(self, until: float) -> bool: ...

    def remember(self, key: str, until: float) -> None: ...

    def problems(self) -> list[str]: ...


class SyncPort(CommandSync, Protocol):
    @property
    def connected(self) -> bool: ...


@dataclass
class Parts:
    """What the controller drives and reads; built by the daemon (or a test)."""

    config: Config
    clock: Clock
    door: Door
    indicators: Indicators
    keyring: KeyRing
    revocations: RevocationPort
    replays: ReplayPort
    meta: MetaLike | None
    entry_log: EntryLogPort
    trust: Timekeeper | None = None  # the decision clock's judge; None: always trusted
    outbox: Requeue | None = None  # what the ``resend`` command makes pending again
    observer: Observer | None = None
    heartbeat: Callable[[], None] | None = None
    # Extra live status (scanner state, outbox backlog): read on the caller's thread.
    live_status: Callable[[], dict[str, Any]] | None = None
