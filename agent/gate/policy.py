"""The decision: scanned text + gate context + time + caches -> grant or a reason.

A pure function: it reads caches through the small read-only protocols below, writes
nothing and never raises. The caller (controller, ``gate-agent verify``) records the
decision and, after a grant, remembers ``replay_key`` until ``replay_until``.

Order of checks (the first failure is the reason): format -> version -> key ->
signature -> holder proof -> clock trusted -> presentation window -> replay ->
validity (nbf/exp) -> scope -> revocation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from agent.core.errors import ProtocolError
from agent.core.reasons import Reason
from agent.protocol.keys import KeyRing
from agent.protocol.presentation import Scanned, read_scanned

log = logging.getLogger(__name__)


class RevocationView(Protocol):
    def is_revoked(self, cti: str, sub: str, iat: int) -> bool: ...


class ReplayView(Protocol):
    def seen(self, key: str) -> bool: ...


@dataclass(frozen=True)
class GateContext:
    site: str
    gate: str
    accept_static: bool = False
    presentation_window_s: int = 30
    clock_skew_s: int = 5
    # Untrusted clock ("interval" rule): a credential signed by the centre proves the
    # time is at least its iat, so the decision time is raised to it.
    time_from_iat: bool = False


@dataclass(frozen=True)
class Decision:
    granted: bool
    reason: Reason
    sub: str | None = None
    cti: str | None = None
    detail: str = ""
    replay_key: str | None = None
    replay_until: float | None = None
    # The credential's times, for the untrusted-clock rule (agent.gate.clockrule).
    nbf: int | None = None
    exp: int | None = None
    iat: int | None = None
    presented_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape (INTERFACE.md): granted, reason, sub, cti."""
        reason = str(self.reason)
        return {"granted": self.granted, "reason": reason, "sub": self.sub, "cti": self.cti}


class _Denied(Exception):
    """A refusal after the credential's signature checked out (sub and cti are known)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decide(
    text: str,
    ctx: GateContext,
    keyring: KeyRing,
    revocations: RevocationView,
    replays: ReplayView,
    now: float,
    clock_trusted: bool = True,
) -> Decision:
    """Grant only what can be proven valid here and now; any doubt is a denial."""
    if not text.strip():  # an empty line from a scanner or from `verify -`
        return Decision(False, Reason.NO_CODE, None, None, "nothing was read")
    try:
        scanned = read_scanned(text)
    except ProtocolError as exc:
        return _refused(exc)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        return Decision(False, Reason.MALFORMED, None, None, f"unreadable code: {exc}")
    except Exception as exc:  # deny on doubt: a bug must never open the door
        log.exception("reading a scanned code failed on an unexpected error")
        return Decision(False, Reason.INTERNAL_ERROR, None, None, f"{type(exc).__name__}: {exc}")
    try:
        return _decide(scanned, ctx, keyring, revocations, replays, now, clock_trusted)
    except _Denied as exc:
        cred = scanned.credential
        return Decision(False, exc.reason, cred.sub, cred.cti, exc.detail)
    except ProtocolError as exc:
        return _refused(exc)
    except Exception as exc:  # deny on doubt: a bug must never open the door
        log.exception("decision failed on an unexpected error")
        return Decision(False, Reason.INTERNAL_ERROR, None, None, f"{type(exc).__name__}: {exc}")


def revocations_stale(issued_at: int | None, now: float, max_age_h: float) -> bool:
    """No list installed, or the installed one is older than ``[policy] revocations_max_age_h``.

    One rule for the daemon and ``gate-agent verify``; what follows from it (alarm only, or
    deny) is ``[policy] on_stale_revocations``.
    """
    return issued_at is None or now - issued_at > max_age_h * 3600.0


def _refused(exc: ProtocolError) -> Decision:
    """Before the signature checked out nothing in the code is trusted: no sub, no cti."""
    try:
        reason = Reason(exc.reason)
    except ValueError:
        reason = Reason.MALFORMED
    return Decision(False, reason, None, None, exc.detail)


def _decide(
    scanned: Scanned,
    ctx: GateContext,
    keyring: KeyRing,
    revocations: RevocationView,
    replays: ReplayView,
    now: float,
    clock_trusted: bool,
) -> Decision:
    cred, proof = scanned.credential, scanned.proof
    key = keyring.get(cred.kid, "issuer", now)
    if not cred.envelope.verify(key.public):
        raise ProtocolError(Reason.BAD_SIGNATURE, f"credential not signed by key {cred.kid!r}")
    if proof is None:
        if cred.holder is not None:
            raise _Denied(Reason.HOLDER_REQUIRED, "credential is bound to a phone: show live code")
        if not ctx.accept_static:
            raise _Denied(Reason.HOLDER_REQUIRED, "this gate accepts live codes only")
    else:
        assert cred.holder is not None  # read_scanned refuses a proof without a cnf key
        if not proof.verify(cred):  # verify_signature refuses small-order/non-canonical keys
            raise _Denied(Reason.BAD_SIGNATURE, "holder proof does not match the credential key")
    if not clock_trusted:
        raise _Denied(Reason.CLOCK_UNTRUSTED, "gate clock is not known to be right")
    if ctx.time_from_iat:
        now = max(now, float(cred.iat))
    replay_key = replay_until = None
    if proof is not None:
        age = now - proof.time
        if age > ctx.presentation_window_s:
            raise _Denied(Reason.PRESENTATION_EXPIRED, f"live code is {age:.0f} s old")
        if -age > ctx.clock_skew_s:
            raise _Denied(Reason.PRESENTATION_EXPIRED, f"live code is {-age:.0f} s in the future")
        assert cred.holder is not None
        replay_key = proof.replay_key(cred.holder)
        if replays.seen(replay_key):
            raise _Denied(Reason.REPLAYED, "this live code was already used")
        replay_until = float(proof.time + ctx.presentation_window_s + 1)
    if now < cred.nbf:
        raise _Denied(Reason.NOT_YET_VALID, f"credential valid from {cred.nbf}")
    if now >= cred.exp:
        raise _Denied(Reason.EXPIRED, f"credential expired at {cred.exp}")
    if not cred.covers(ctx.site, ctx.gate):
        raise _Denied(Reason.WRONG_SCOPE, f"credential is not for {ctx.site}/{ctx.gate}")
    if revocations.is_revoked(cred.cti, cred.sub, cred.iat):
        raise _Denied(Reason.REVOKED, "credential revoked by the centre")
    return Decision(True, Reason.OK, cred.sub, cred.cti, "", replay_key, replay_until,
                    cred.nbf, cred.exp, cred.iat, None if proof is None else proof.time)
