"""What a scan may be granted while no clock source is trusted (``on_untrusted_clock``).

Pure. The true time T is unknown, but two things bound it from below: the time floor
(the highest time a trusted clock gave, so T >= floor) and the credential's own ``iat``
(the centre signed it, so T >= iat). Nothing bounds T from above offline: after a power
cut the system clock restarts from the last saved time and T is later by the outage.

``interval`` (the default) therefore grants only a credential valid over the whole span
``[lo, hi + margin]`` with ``lo = max(floor, iat)`` and ``hi = max(system clock, lo)``
(raised to the phone's signed presentation time when that is ahead by at most the
margin): not-before at or below ``lo``, expiry above ``hi + margin``. A credential that
expired during an outage shorter than the margin is refused; one expiring within the
margin of the gate's best estimate is refused with ``clock_untrusted`` (refresh the code).
Risk analysis: docs/decisions.md ("A clock policy for gates without a battery clock").
"""

from __future__ import annotations

import dataclasses

from agent.core.reasons import Reason
from agent.gate.policy import Decision, GateContext


def untrusted_context(ctx: GateContext, margin_s: float) -> GateContext:
    """The context for ``decide`` under the rule: the decision time is raised to the
    credential's iat, and a live code from a phone ahead of the clock by up to the margin
    is judged by :func:`judge_untrusted` rather than refused as "in the future"."""
    return dataclasses.replace(ctx, clock_skew_s=max(ctx.clock_skew_s, int(margin_s)),
                               time_from_iat=True)


def judge_untrusted(decision: Decision, floor: float, system: float, margin_s: float) -> Decision:
    """Keep a grant only if the credential is valid over the whole span the true time may
    be in; anything else becomes ``clock_untrusted`` (a denial is returned unchanged)."""
    if not decision.granted:
        return decision
    if decision.nbf is None or decision.exp is None:
        return _refuse(decision, "the credential's validity is unknown")
    lo = max(floor, float(decision.iat or 0))
    hi = max(system, lo)
    shown = decision.presented_at
    if shown is not None and hi < shown <= hi + margin_s:
        hi = shown
    if decision.nbf > lo:
        return _refuse(decision, f"valid from {decision.nbf}, and the untrusted clock cannot "
                                 "prove that time has come")
    if decision.exp <= hi + margin_s:
        return _refuse(decision, f"expires at {decision.exp}, within {margin_s:.0f} s of the "
                                 "untrusted clock's estimate")
    return decision


def _refuse(decision: Decision, detail: str) -> Decision:
    return dataclasses.replace(decision, granted=False, reason=Reason.CLOCK_UNTRUSTED,
                               detail=detail, replay_key=None, replay_until=None)
