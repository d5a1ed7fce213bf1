"""The alarms the gate raises about its own state, checked on every controller tick.

``revocations_stale`` (the list is missing or older than ``revocations_max_age_h``),
``clock_untrusted`` (the decision clock is not trusted: the centre sees it while time is
asked for), ``state_recovered`` (a store found corruption at start and recovered) and
``state_damaged`` (values restored out of bounds, ignored, never fatal). Also the upkeep
that must run on the thread owning the stores: compacting the revocation list when the
gate is idle, and asking for a resync after a signed list was dropped for want of room.
"""

from __future__ import annotations

import logging

from agent.core.timefmt import format_instant
from agent.gate.gatekeeper import Gatekeeper
from agent.gate.inbound import Inbox
from agent.gate.modes import ModeKeeper
from agent.gate.parts import ReplayPort, RevocationPort, SyncPort
from agent.gate.timekeeper import Timekeeper

log = logging.getLogger(__name__)


class StateAlarms:
    """Raises and clears the state alarms in the controller's alarm table (its thread)."""

    def __init__(self, alarms: dict[str, str], gatekeeper: Gatekeeper,
                 revocations: RevocationPort, replays: ReplayPort, trust: Timekeeper | None,
                 modes: ModeKeeper, inbox: Inbox, max_age_h: float) -> None:
        self._alarms = alarms
        self._gatekeeper = gatekeeper
        self._revocations = revocations
        self._replays = replays
        self._trust = trust
        self._modes = modes
        self._inbox = inbox
        self._max_age_h = max_age_h
        self.sync: SyncPort | None = None

    def check(self, now: float) -> None:
        stale = self._gatekeeper.list_stale(now)
        if stale and "revocations_stale" not in self._alarms:
            log.warning("revocation list is missing or older than %.0f h", self._max_age_h)
            self._alarms["revocations_stale"] = format_instant(now)
        elif not stale:
            self._alarms.pop("revocations_stale", None)
        trust = self._trust
        if trust is not None and not trust.trusted:  # the centre sees it; time is asked for
            self._alarms.setdefault("clock_untrusted", format_instant(now))
        else:
            self._alarms.pop("clock_untrusted", None)
        self._maintain_stores()

    def _maintain_stores(self) -> None:
        """Upkeep that must run on the thread owning the stores: compaction, recovery alarms."""
        revocations = self._revocations
        if revocations.compaction_due and self._inbox.empty():
            try:
                revocations.compact()
            except Exception:
                log.exception("compacting the revocation list failed; will retry when idle")
        problems = [*revocations.problems(), *self._replays.problems()]
        if problems:
            self._alarms["state_recovered"] = "; ".join(problems)
        damage = [*getattr(self._trust, "problems", list)(), self._modes.damage]
        if any(damage):  # values restored out of bounds: ignored, never fatal
            self._alarms["state_damaged"] = "; ".join(d for d in damage if d)[:400]
        if self._inbox.resync_due() and self.sync is not None:
            log.warning("a signed revocation list was dropped (no room): asking for a resync")
            self.sync.request_resync("revocation list dropped", revocations.version)
