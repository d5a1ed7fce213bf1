"""One rulebook: ``gate-agent verify`` answers what the daemon's controller answers, for the
same state and the same clock, over every reason a scan can get.

Each case sets up a real gate state (mock pins, real stores), asks the verifier first
(it reads the state as it is), then lets the controller decide the same text and record
it. The two reasons must be equal, and equal to the expected one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from agent.core.events import Inbound, Scan
from agent.core.reasons import Reason
from agent.demo.kit import ISSUER_KID, REVOKED_SUB
from agent.protocol.credential import issue_credential
from agent.runtime.verifier import Verifier
from tests.controller_support import Rig, controller_rig

HOUR = 3600.0


@dataclass
class Case:
    reason: Reason
    code: Callable[[Rig], str]
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    clock_synchronised: bool = True
    before: Callable[[Rig, str], None] | None = None  # state the gate has before the scan
    with_list: bool = True  # the gate has its provisioning revocation list


def _valid(rig: Rig) -> str:
    return rig.kit.valid_code("C-1", rig.clock.now())


def _foreign_issuer(rig: Rig, kid: str) -> str:
    now = rig.clock.now()
    other = nacl.signing.SigningKey.generate()
    holder = rig.kit.holder("C-7")
    cred = issue_credential(other, kid=kid, sub="C-7", scope=[rig.kit.site], not_before=now - 60,
                            ttl_s=HOUR, now=now, holder_pub=bytes(holder.verify_key))
    return rig.kit.presentation(cred, "C-7", now)


def _presented(rig: Rig, sub: str, **cred: Any) -> str:
    now = rig.clock.now()
    return rig.kit.presentation(rig.kit.credential(sub, now, **cred), sub, now)


def _scan_once(rig: Rig, text: str) -> None:
    now = rig.clock.now()
    rig.controller.process(Scan(text, "sim", now, rig.clock.monotonic()))


def _install_list(rig: Rig, _text: str) -> None:
    rig.controller.process(Inbound("revocations_full",
                                   rig.kit.revocation_list(2, rig.clock.now())))


def _install_old_list(rig: Rig, _text: str) -> None:
    rig.controller.process(Inbound("revocations_full",
                                   rig.kit.revocation_list(2, rig.clock.now() - 100 * HOUR)))


CASES = [
    Case(Reason.OK, _valid, before=_install_list),
    Case(Reason.NO_CODE, lambda rig: "   "),
    Case(Reason.MALFORMED, lambda rig: "HELLO-THIS-IS-NOT-A-PASS"),
    Case(Reason.UNSUPPORTED_VERSION, lambda rig: "QM9:ABCDEF"),
    Case(Reason.UNKNOWN_KEY, lambda rig: _foreign_issuer(rig, "someone-else")),
    Case(Reason.BAD_SIGNATURE, lambda rig: _foreign_issuer(rig, ISSUER_KID)),
    Case(Reason.EXPIRED, lambda rig: _presented(rig, "C-2", not_before=rig.clock.now() - 86400,
                                                ttl_s=HOUR)),
    Case(Reason.NOT_YET_VALID, lambda rig: _presented(rig, "C-3",
                                                      not_before=rig.clock.now() + HOUR)),
    Case(Reason.WRONG_SCOPE, lambda rig: _presented(rig, "C-4", scope="other-site")),
    Case(Reason.REVOKED, lambda rig: _presented(rig, REVOKED_SUB), before=_install_list),
    Case(Reason.HOLDER_REQUIRED, lambda rig: rig.kit.credential("C-5", rig.clock.now())),
    Case(Reason.PRESENTATION_EXPIRED, lambda rig: rig.kit.presentation(
        rig.kit.credential("C-6", rig.clock.now()), "C-6", rig.clock.now() - 120)),
    Case(Reason.REPLAYED, _valid, before=_scan_once),
    Case(Reason.CLOCK_UNTRUSTED, _valid, clock_synchronised=False,
         sections={"policy": {"on_untrusted_clock": "deny"}}),
    Case(Reason.CLOCK_UNTRUSTED, lambda rig: _presented(
        rig, "C-8", not_before=rig.clock.now() - 11.5 * HOUR, ttl_s=12 * HOUR),
        clock_synchronised=False),  # the default interval rule: expires within the margin
    Case(Reason.LOCKDOWN, _valid, sections={"policy": {"mode": "lockdown"}}),
    Case(Reason.REVOCATIONS_STALE, _valid, before=_install_old_list,
         sections={"policy": {"on_stale_revocations": "deny"}}),
    Case(Reason.REVOCATIONS_UNKNOWN, _valid, with_list=False),
]

# Not reachable by verify on purpose: rate limiting protects a door from a flood and a
# batch check is not one; internal_error needs a broken store or a bug.
NOT_FOR_VERIFY = {Reason.RATE_LIMITED, Reason.INTERNAL_ERROR}
# A frame (or image) holding several codes: test_two_codes_in_one_frame_are_one_scan.
FRAME_ONLY = {Reason.EXTRA_CODE}


def test_the_cases_cover_every_reason_a_scan_can_get() -> None:
    assert {case.reason for case in CASES} | NOT_FOR_VERIFY | FRAME_ONLY == set(Reason)


def test_two_codes_in_one_frame_are_one_scan_for_verify_and_daemon(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from hw.render import qr_image

    with controller_rig(tmp_path, clock_probe=lambda: True) as rig:
        first, second = _valid(rig), rig.kit.valid_code("C-2", rig.clock.now())
        left, right = qr_image(first, module_px=4), qr_image(second, module_px=4)
        canvas = np.full((max(left.shape[0], right.shape[0]) + 40,
                          left.shape[1] + right.shape[1] + 60), 255, np.uint8)
        canvas[20:20 + left.shape[0], 20:20 + left.shape[1]] = left
        canvas[20:20 + right.shape[0], 40 + left.shape[1]:40 + left.shape[1] + right.shape[1]] \
            = right
        image = tmp_path / "two.png"
        cv2.imwrite(str(image), canvas)
        verifier = Verifier(rig.controller.parts.config, rig.clock, probe=lambda: True)
        try:
            by_verify = [v.reason for v in verifier.judge_image(image)]
        finally:
            verifier.close()
        assert by_verify == [Reason.OK, Reason.EXTRA_CODE]
        third, fourth = (rig.kit.valid_code(f"C-{n}", rig.clock.now()) for n in (3, 4))
        rig.controller.process(Scan(third, "sim", rig.clock.now(), 0.0, others=(fourth,)))
        assert [r["reason"] for r in rig.rows()] == ["ok", "extra_code"]
        rig.controller.process(Scan(fourth, "sim", rig.clock.now(), 0.0))  # unused: granted
        assert [r["reason"] for r in rig.rows()][-1] == "ok"


@pytest.mark.parametrize("case", CASES, ids=[f"{c.reason.value}-{n}" for n, c in enumerate(CASES)])
def test_verify_answers_what_the_daemon_answers(tmp_path: Path, case: Case) -> None:
    synced = case.clock_synchronised
    with controller_rig(tmp_path, clock_probe=lambda: synced, with_list=case.with_list,
                        **case.sections) as rig:
        text = case.code(rig)
        if case.before is not None:
            case.before(rig, text)
        verifier = Verifier(rig.controller.parts.config, rig.clock, probe=lambda: synced)
        try:
            by_verify = verifier.judge(text).reason
        finally:
            verifier.close()
        _scan_once(rig, text)
        by_daemon = rig.rows()[-1]["reason"]
    assert (by_verify, by_daemon) == (case.reason, case.reason)
