"""The one rulebook of a scan: every rule that turns scanned text into grant or refusal.

``policy.decide`` proves the code (signature, holder proof, window, replay, validity,
scope, revocation). The gatekeeper adds the gate's own rules on top, always in this
order, and is the only place they live:

1. the clock: while the decision clock is untrusted, ``[policy] on_untrusted_clock``
   decides: ``interval`` (default) grants only a credential valid over the whole span
   the true time may be in (agent.gate.clockrule), ``deny`` refuses with
   ``clock_untrusted``, ``allow`` decides with the floor-protected clock;
2. replay damage: a live code made before the replay keys were lost is ``replayed``;
3. the mode: ``lockdown`` refuses every scan (``lockdown``);
4. the revocation list: a grant is refused with ``revocations_unknown`` when there is no
   list, or none provably as new as the newest the gate had (``[policy]
   on_unknown_revocations = "use_older"`` decides with an older list, never with none);
   on a stale list with ``revocations_stale`` when ``on_stale_revocations = "deny"``;
5. the rate limit: beyond ``[policy] denials_per_minute`` a denial becomes
   ``rate_limited`` and only the first of an episode is recorded one by one.

The controller writes a grant's replay key in the transaction of its entry row (one
fsync); :meth:`Gatekeeper.remember` stores it on its own for verify (a presentation that
cannot be remembered is refused). The controller, ``gate-agent verify``, ``check``,
``revocations status`` and the demo all use this class, so they answer the same for the
same state and clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Protocol

from agent.core.config import Config
from agent.core.reasons import Reason
from agent.gate.clockrule import judge_untrusted, untrusted_context
from agent.gate.modes import Mode
from agent.gate.policy import Decision, GateContext, decide, revocations_stale
from agent.gate.ratelimit import DenialLimiter
from agent.protocol.keys import KeyRing

log = logging.getLogger(__name__)


class ListView(Protocol):
    """The installed revocation list as the rulebook reads it."""

    version: int | None
    issued_at: int | None

    @property
    def state(self) -> str: ...  # ok | unknown (agent.store.revocations)

    def is_revoked(self, cti: str, sub: str, iat: int) -> bool: ...


class ReplayMemory(Protocol):
    def seen(self, key: str) -> bool: ...

    def refuses(self, until: float) -> bool: ...  # made before the keys were lost

    def remember(self, key: str, until: float) -> None: ...


class ClockTrust(Protocol):
    """Whether the decision clock may be believed (agent.gate.timekeeper.Timekeeper)."""

    @property
    def trusted(self) -> bool: ...

    @property
    def state(self) -> Any: ...

    @property
    def floor(self) -> float: ...

    def system_time(self) -> float: ...


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
    clock: str | None = None  # the clock state the scan was judged with (entry row)

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
    state: str = "ok"

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "age_s": self.age_s, "stale": self.stale,
                "state": self.state}


def list_status(revocations: ListView, now: float, max_age_h: float) -> ListStatus:
    """The installed list's version, age, staleness and state: the one rule for the
    controller, verify, ``revocations status`` and ``check``."""
    issued = revocations.issued_at
    age = round(now - issued, 1) if issued is not None else None
    return ListStatus(revocations.version, age, revocations_stale(issued, now, max_age_h),
                      revocations.state)


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
        rule = self._policy.on_untrusted_clock
        try:
            decision = self._decide(text, now, trusted, rule)
        except Exception:  # decide() promises never to raise; deny on doubt anyway
            log.exception("decide() raised: denying")
            decision = Decision(False, Reason.INTERNAL_ERROR, detail="decide raised")
        granted, reason = decision.granted, decision.reason
        if (granted and decision.replay_until is not None
                and self.replays.refuses(decision.replay_until)):
            granted, reason = False, Reason.REPLAYED
        if self._modes is not None and self._modes.mode == "lockdown":
            granted, reason = False, Reason.LOCKDOWN
        elif granted and self.list_unknown():
            granted, reason = False, Reason.REVOCATIONS_UNKNOWN
        elif granted and self._policy.on_stale_revocations == "deny" and self.list_stale(now):
            granted, reason = False, Reason.REVOCATIONS_STALE
        if not granted and reason is not decision.reason:
            decision = replace(decision, replay_key=None, replay_until=None)
        record = True
        if not granted and self._limiter is not None and mono is not None:
            if self._limiter.limited(mono):
                record = self._limiter.suppress(reason.value, mono)
                reason = Reason.RATE_LIMITED
            else:
                self._limiter.note_denial(mono)
        state = None if self._trust is None else str(self._trust.state)
        return Verdict(decision, granted, reason, record, trusted, state)

    def _decide(self, text: str, now: float, trusted: bool, rule: str) -> Decision:
        if trusted or rule == "allow":
            return decide(text, self._ctx, self.keyring, self.revocations, self.replays, now)
        if rule == "deny":
            return decide(text, self._ctx, self.keyring, self.revocations, self.replays, now,
                          clock_trusted=False)
        assert self._trust is not None  # untrusted needs a judge of trust
        margin = self._policy.untrusted_margin_s
        decision = decide(text, untrusted_context(self._ctx, margin), self.keyring,
                          self.revocations, self.replays, now)
        return judge_untrusted(decision, self._trust.floor, self._trust.system_time(), margin)

    def list_unknown(self) -> bool:
        """No list the gate may decide with: ``revocations_unknown`` for grants."""
        if self.revocations.state == "ok":
            return False
        older_allowed = self._policy.on_unknown_revocations == "use_older"
        return not (older_allowed and self.revocations.version is not None)

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

    @staticmethod
    def replay_row(verdict: Verdict) -> tuple[str, float] | None:
        """A grant's replay key and end, to be written with its entry row."""
        decision = verdict.decision
        if not verdict.granted or decision.replay_key is None or decision.replay_until is None:
            return None
        return decision.replay_key, decision.replay_until

    def list_stale(self, now: float) -> bool:
        return revocations_stale(self.revocations.issued_at, now,
                                 self._policy.revocations_max_age_h)

    def list_status(self, now: float) -> ListStatus:
        return list_status(self.revocations, now, self._policy.revocations_max_age_h)
