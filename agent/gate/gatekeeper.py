"""The one rulebook of a scan: every rule that turns scanned text into grant or refusal.

``policy.decide`` proves the code (signature, holder proof, window, replay, validity,
scope, revocation). The gatekeeper adds the gate's own rules on top, always in this
order, and is the only place they live:

1. the clock: with ``[policy] on_untrusted_clock = "deny"`` an untrusted decision clock
   makes ``decide`` refuse with ``clock_untrusted``;
2. the mode: ``lockdown`` refuses every scan (``lockdown``);
3. the revocation list: a grant on a missing or stale list is refused with
   ``revocations_stale`` when ``[policy] on_stale_revocations = "deny"``;
4. the rate limit: beyond ``[policy] denials_per_minute`` a denial becomes
   ``rate_limited`` and only the first of an episode is recorded one by one.

After a grant, :meth:`Gatekeeper.remember` stores the presentation's replay key (before
the row and the pulse: a presentation that cannot be remembered is refused). The
controller, ``gate-agent verify``, ``check``, ``revocations status`` and the demo all use
this class, so they answer the same for the same state and clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Protocol

from agent.core.config import Config
from agent.core.reasons import Reason
from agent.gate.modes import Mode
from agent.gate.policy import Decision, GateContext, decide, revocations_stale
from agent.gate.ratelimit import DenialLimiter
from agent.protocol.keys import KeyRing

log = logging.getLogger(__name__)


class ListView(Protocol):
    """The installed revocation list as the rulebook reads it."""

    version: int | None
    issued_at: int | None

    def is_revoked(self, cti: str, sub: str, iat: int) -> bool: ...


class ReplayMemory(Protocol):
    def seen(self, key: str) -> bool: ...

    def remember(self, key: str, until: float) -> None: ...


class ClockTrust(Protocol):
    """Whether the decision clock may be believed (agent.gate.timekeeper.Timekeeper)."""

    @property
    def trusted(self) -> bool: ...


class ModeView(Protocol):
    @property
    def mode(self) -> Mode: ...


@dataclass(frozen=True)
class Verdict:
    """A scan's outcome: the proof's ``decision`` and what the gate's rules made of it."""

    decision: Decision
    granted: bool
    reason: Reason
    record: bool = True  # False: a rate-limited denial counted into the next summary row
    clock_trusted: bool = True

    @property
    def sub(self) -> str | None:
        return self.decision.sub

    @property
    def cti(self) -> str | None:
        return self.decision.cti

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape of ``gate-agent verify`` (INTERFACE.md)."""
        return {"granted": self.granted, "reason": self.reason.value, "sub": self.sub,
                "cti": self.cti}


@dataclass(frozen=True)
class ListStatus:
    version: int | None
    age_s: float | None
    stale: bool

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "age_s": self.age_s, "stale": self.stale}


def list_status(revocations: ListView, now: float, max_age_h: float) -> ListStatus:
    """The installed list's version, age and staleness: the one rule for the controller,
    verify, ``revocations status`` and ``check``."""
    issued = revocations.issued_at
    age = round(now - issued, 1) if issued is not None else None
    return ListStatus(revocations.version, age, revocations_stale(issued, now, max_age_h))


def gate_context(config: Config) -> GateContext:
    """The decision's view of the config."""
    return GateContext(
        site=config.gate.site,
        gate=config.gate.id,
        accept_static=config.policy.accept_static,
        presentation_window_s=config.policy.presentation_window_s,
        clock_skew_s=config.policy.clock_skew_s,
    )


class Gatekeeper:
    """Judges scans for one gate; owns no thread (the controller's, or verify's)."""

    def __init__(
        self,
        config: Config,
        keyring: KeyRing,
        revocations: ListView,
        replays: ReplayMemory,
        *,
        trust: ClockTrust | None = None,
        modes: ModeView | None = None,
        limiter: DenialLimiter | None = None,
    ) -> None:
        self._policy = config.policy
        self._ctx = gate_context(config)
        self.keyring = keyring
        self.revocations = revocations
        self.replays = replays
        self._trust = trust
        self._modes = modes
        self._limiter = limiter

    @property
    def context(self) -> GateContext:
        return self._ctx

    @property
    def limiter(self) -> DenialLimiter | None:
        return self._limiter

    def clock_trusted(self) -> bool:
        return self._trust is None or self._trust.trusted

    def judge(self, text: str, now: float, mono: float | None = None) -> Verdict:
        """Every rule of a scan, in order; never raises. ``mono`` drives the rate limit."""
        trusted = self.clock_trusted()
        enforce_clock = self._policy.on_untrusted_clock == "deny"
        try:
            decision = decide(
                text, self._ctx, self.keyring, self.revocations, self.replays, now,
                clock_trusted=trusted or not enforce_clock,
            )
        except Exception:  # decide() promises never to raise; deny on doubt anyway
            log.exception("decide() raised: denying")
            decision = Decision(False, Reason.INTERNAL_ERROR, detail="decide raised")
        granted, reason = decision.granted, decision.reason
        if self._modes is not None and self._modes.mode == "lockdown":
            granted, reason = False, Reason.LOCKDOWN
        elif granted and self._policy.on_stale_revocations == "deny" and self.list_stale(now):
            granted, reason = False, Reason.REVOCATIONS_STALE
        record = True
        if not granted and self._limiter is not None and mono is not None:
            if self._limiter.limited(mono):
                record = self._limiter.suppress(reason.value, mono)
                reason = Reason.RATE_LIMITED
            else:
                self._limiter.note_denial(mono)
        return Verdict(decision, granted, reason, record, trusted)

    def remember(self, verdict: Verdict, now: float) -> Verdict:
        """Store a granted presentation's replay key; a failure refuses the scan."""
        decision = verdict.decision
        if not verdict.granted or decision.replay_key is None:
            return verdict
        try:
            self.replays.remember(decision.replay_key, decision.replay_until or now)
        except Exception:
            log.exception("replay cache write failed: denying this presentation")
            return replace(verdict, granted=False, reason=Reason.INTERNAL_ERROR)
        return verdict

    def list_stale(self, now: float) -> bool:
        return revocations_stale(self.revocations.issued_at, now,
                                 self._policy.revocations_max_age_h)

    def list_status(self, now: float) -> ListStatus:
        return list_status(self.revocations, now, self._policy.revocations_max_age_h)
