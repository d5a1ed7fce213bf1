"""Clock states, the floor rules, nonce-proven time and the untrusted-clock rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.clock import FixedClock
from agent.core.reasons import Reason
from agent.gate.clockrule import judge_untrusted, untrusted_context
from agent.gate.timekeeper import ClockSettings, ClockState, Timekeeper
from agent.protocol.timemsg import TimeMessage, is_nonce, parse_time, sign_time
from agent.store.meta import Meta
from tests.credkit import NOW, Kit
from tests.sync_support import make_ops_keys

TEN_YEARS = 10 * 365 * 86400.0
MARGIN = 3600.0


class Probe:
    """The kernel's NTP answer, switched by the test."""

    def __init__(self, synced: bool) -> None:
        self.synced = synced

    def __call__(self) -> bool:
        return self.synced


def keeper(clock: FixedClock, meta: Meta | None, synced: bool, **settings: float) -> Timekeeper:
    return Timekeeper(clock, meta, Probe(synced), settings=ClockSettings(**settings),
                      probe_every_s=0.0)


def interval(kit: Kit, text: str, tk: Timekeeper) -> Reason:
    """The default untrusted rule, as the gatekeeper applies it."""
    decision = kit.decide(text, now=tk.now(), ctx=untrusted_context(kit.ctx, MARGIN))
    return judge_untrusted(decision, tk.floor, tk.system_time(), MARGIN).reason


def test_an_untrusted_clock_in_the_future_never_raises_the_floor(tmp_path: Path) -> None:
    future = keeper(FixedClock(NOW + TEN_YEARS), Meta(tmp_path), synced=False)
    future.persist()  # the boot with the clock 10 years ahead
    assert future.floor == 0.0 and future.state is ClockState.UNTRUSTED
    kit = Kit()
    back = keeper(FixedClock(NOW), Meta(tmp_path), synced=True)  # NTP is back
    assert back.state is ClockState.SYNCHRONISED and back.now() == NOW
    assert kit.decide(kit.presentation(at=NOW), now=back.now()).granted  # not "expired"


def test_a_floor_in_the_future_is_lowered_only_by_an_answer_to_our_nonce(
    tmp_path: Path,
) -> None:
    ops = make_ops_keys(tmp_path / "ops")
    meta = Meta(tmp_path)
    meta.set("time_floor", NOW + TEN_YEARS)  # saved by an older agent from a wrong clock
    tk = keeper(FixedClock(NOW), meta, synced=True)
    assert tk.state is ClockState.UNTRUSTED  # NTP disagrees with the floor: conflict
    assert "clock_below_floor" in tk.snapshot()["clock_alarms"]
    stray = parse_time(sign_time(NOW, ops.key, ops.kid, nonce="ab" * 16), ops.keyring, NOW)
    assert tk.accept_time(stray).reason == "unknown_nonce"
    request = tk.time_request(connected_now=True)
    assert request is not None and is_nonce(request["nonce"]) and request["clock"] == "untrusted"
    answer = parse_time(sign_time(NOW, ops.key, ops.kid, nonce=request["nonce"]), ops.keyring,
                        NOW)
    tk.accept_time(answer)
    assert tk.floor == NOW and tk.state is ClockState.SYNCHRONISED
    assert "time_floor_lowered" in tk.snapshot()["clock_alarms"]
    assert tk.accept_time(answer).reason == "unknown_nonce"  # one answer per request


def test_expired_credential_is_never_granted_at_the_floor() -> None:
    kit = Kit()
    real = NOW
    cred = kit.credential(not_before=real - 12 * 3600, ttl_s=12 * 3600 - 600)  # expired 10 min ago
    meta_floor = real - 3600  # the floor an hour old; the clock far behind
    clock = FixedClock(real - 30 * 86400)
    tk = keeper(clock, None, synced=False)
    tk._floor = meta_floor
    assert interval(kit, kit.presentation(cred, at=real), tk) is Reason.CLOCK_UNTRUSTED
    fresh = kit.credential(not_before=real - 2 * 3600)
    assert interval(kit, kit.presentation(fresh, at=real), tk) is Reason.OK


def test_reboot_offline_without_rtc_grants_a_valid_courier_by_default(tmp_path: Path) -> None:
    kit = Kit()
    real = NOW
    synced = keeper(FixedClock(real - 3600), Meta(tmp_path), synced=True)
    synced.persist()  # floor saved an hour before the power cut
    # Power back, no network: the system clock restarts from timesyncd's saved time.
    tk = keeper(FixedClock(real - 600), Meta(tmp_path), synced=False)
    assert tk.state is ClockState.UNTRUSTED
    cred = kit.credential(not_before=real - 2 * 3600)
    assert interval(kit, kit.presentation(cred, at=real), tk) is Reason.OK
    # A credential issued after the floor and even after the clock's own time proves
    # the time is at least its iat: granted too.
    newer = kit.credential(not_before=real - 60)
    assert interval(kit, kit.presentation(newer, at=real), tk) is Reason.OK
    # A future not-before cannot be proven: refused.
    later = kit.credential(not_before=real + 3600)
    assert interval(kit, kit.presentation(later, at=real), tk) is not Reason.OK


def test_replayed_time_message_after_an_outage_does_not_move_the_clock_back(
    tmp_path: Path,
) -> None:
    ops = make_ops_keys(tmp_path / "ops")
    captured = sign_time(NOW, ops.key, ops.kid)  # a broadcast recorded before the outage
    meta = Meta(tmp_path)
    before = keeper(FixedClock(NOW), meta, synced=True)
    before.persist()
    outage = 10 * 3600.0
    tk = keeper(FixedClock(NOW + 1), Meta(tmp_path), synced=False)  # real time NOW + 10 h
    msg = parse_time(captured, ops.keyring, NOW)
    assert tk.accept_time(TimeMessage(msg.t + 1)).reason == "needs_nonce"
    assert tk.state is ClockState.UNTRUSTED
    kit = Kit()
    expired = kit.credential(not_before=NOW - 6 * 3600, ttl_s=6 * 3600 + outage / 2)
    assert interval(kit, kit.presentation(expired, at=NOW + outage), tk) is not Reason.OK


def test_broadcast_time_only_moves_a_trusted_centre_time_forward_within_a_bound(
    tmp_path: Path,
) -> None:
    ops = make_ops_keys(tmp_path / "ops")
    clock = FixedClock(NOW - 7200)
    tk = keeper(clock, None, synced=False, forward_bound_s=300)
    request = tk.time_request(connected_now=True)
    assert request is not None
    tk.accept_time(parse_time(sign_time(NOW, ops.key, ops.kid, nonce=request["nonce"]),
                              ops.keyring, NOW))
    assert tk.state is ClockState.CENTRE and tk.now() == NOW
    clock.advance(60)
    assert tk.accept_time(TimeMessage(NOW + 60 + 1000)).reason == "too_far_ahead"
    assert tk.accept_time(TimeMessage(NOW + 30)).reason == "not_newer"
    assert tk.accept_time(TimeMessage(NOW + 62)).applied
    assert tk.now() == NOW + 62


def test_holdover_keeps_the_ntp_time_for_its_window_then_untrusted() -> None:
    clock = FixedClock(NOW)
    probe = Probe(True)
    tk = Timekeeper(clock, None, probe, settings=ClockSettings(holdover_s=3600),
                    probe_every_s=0.0)
    assert tk.state is ClockState.SYNCHRONISED
    probe.synced = False
    clock.advance(600)
    assert tk.state is ClockState.HOLDOVER and tk.now() == NOW + 600
    clock.advance(3600)
    assert tk.state is ClockState.UNTRUSTED


def test_a_declared_rtc_is_trusted_but_not_below_the_floor(tmp_path: Path) -> None:
    meta = Meta(tmp_path)
    meta.set("time_floor", NOW)
    assert keeper(FixedClock(NOW + 5), meta, synced=False, rtc=True).state is ClockState.RTC
    dead_battery = keeper(FixedClock(NOW - 86400), meta, synced=False, rtc=True)
    assert dead_battery.state is ClockState.UNTRUSTED


@pytest.mark.parametrize("state", [ClockState.SYNCHRONISED, ClockState.UNTRUSTED])
def test_time_requests_only_when_the_clock_needs_them(state: ClockState) -> None:
    tk = keeper(FixedClock(NOW), None, synced=state is ClockState.SYNCHRONISED,
                request_every_s=60)
    first = tk.time_request(connected_now=True)
    if state is ClockState.SYNCHRONISED:
        assert first is None
        return
    assert first is not None and tk.time_request() is None  # not again within a minute
