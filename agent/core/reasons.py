"""Stable, machine-readable reason codes for every gate decision.

These strings are a public contract (INTERFACE.md): scripts, the centre and the
indicator patterns key on them. Add codes freely; never change a code's meaning.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    OK = "ok"
    NO_CODE = "no_code"
    MALFORMED = "malformed"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_SCOPE = "wrong_scope"
    REVOKED = "revoked"
    HOLDER_REQUIRED = "holder_required"
    PRESENTATION_EXPIRED = "presentation_expired"
    REPLAYED = "replayed"
    CLOCK_UNTRUSTED = "clock_untrusted"
    LOCKDOWN = "lockdown"
    RATE_LIMITED = "rate_limited"
    REVOCATIONS_STALE = "revocations_stale"
    # No revocation list the gate can prove at least as new as the newest it had.
    REVOCATIONS_UNKNOWN = "revocations_unknown"
    INTERNAL_ERROR = "internal_error"
    # The frame held more than one code: another one was decided, this one ignored
    # (not verified, its replay key not used). See docs/decisions.md.
    EXTRA_CODE = "extra_code"


class DenialClass(StrEnum):
    """What a courier at the door can do about a refusal; drives LED/buzzer patterns.

    Where a class has the name of a reason code it means the same (``wrong_scope``); what
    a person reads is :data:`OUTCOME_TEXT`, the one phrase every view shows.
    """

    GRANTED = "granted"
    INVALID = "invalid"  # not a credential we can prove: get a fresh code from the app
    EXPIRED = "expired"  # credential or presentation too old: refresh the code
    REVOKED = "revoked"  # access withdrawn: call the centre
    WRONG_SCOPE = "wrong_scope"  # valid, but not for this gate
    REPLAYED = "replayed"  # screenshot or second use: show the live code
    UNAVAILABLE = "unavailable"  # gate cannot decide now (lockdown, clock, rate limit)


# The one human phrase per outcome (demo panel, docs tables), and what the courier does.
OUTCOME_TEXT: dict[DenialClass, str] = {
    DenialClass.GRANTED: "granted",
    DenialClass.INVALID: "invalid code",
    DenialClass.EXPIRED: "expired",
    DenialClass.REVOKED: "revoked",
    DenialClass.WRONG_SCOPE: "wrong gate",
    DenialClass.REPLAYED: "replayed",
    DenialClass.UNAVAILABLE: "gate unavailable",
}
COURIER_SHOULD: dict[DenialClass, str] = {
    DenialClass.GRANTED: "enter",
    DenialClass.INVALID: "get a fresh code from the app",
    DenialClass.EXPIRED: "refresh the code",
    DenialClass.REVOKED: "call the centre",
    DenialClass.WRONG_SCOPE: "use the right gate",
    DenialClass.REPLAYED: "show the live code, not a screenshot",
    DenialClass.UNAVAILABLE: "wait / call the centre",
}


_CLASS_OF: dict[Reason, DenialClass] = {
    Reason.OK: DenialClass.GRANTED,
    Reason.EXPIRED: DenialClass.EXPIRED,
    Reason.NOT_YET_VALID: DenialClass.EXPIRED,
    Reason.PRESENTATION_EXPIRED: DenialClass.EXPIRED,
    Reason.REVOKED: DenialClass.REVOKED,
    Reason.WRONG_SCOPE: DenialClass.WRONG_SCOPE,
    Reason.REPLAYED: DenialClass.REPLAYED,
    Reason.CLOCK_UNTRUSTED: DenialClass.UNAVAILABLE,
    Reason.LOCKDOWN: DenialClass.UNAVAILABLE,
    Reason.RATE_LIMITED: DenialClass.UNAVAILABLE,
    Reason.REVOCATIONS_STALE: DenialClass.UNAVAILABLE,
    Reason.REVOCATIONS_UNKNOWN: DenialClass.UNAVAILABLE,
}


def denial_class(reason: Reason) -> DenialClass:
    """Map a reason to the signal the courier sees; anything unlisted is ``invalid``."""
    return _CLASS_OF.get(reason, DenialClass.INVALID)
