"""Clock trust, the time floor, and signed time messages from the centre."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.core.clock import FixedClock
from agent.core.errors import ProtocolError, UsageError
from agent.gate.timekeeper import ClockState, Timekeeper
from agent.protocol.timemsg import parse_time, sign_time
from agent.store.meta import Meta
from agent.sync.broker import broker_settings
from tests.sync_support import make_ops_keys

T0 = 1_800_000_000.0


def test_decision_clock_never_runs_below_the_persisted_floor(tmp_path: Path) -> None:
    clock = FixedClock(T0)
    keeper = Timekeeper(clock, Meta(tmp_path), probe=lambda: True)
    keeper.persist()
    # Reboot without a battery clock: the system clock starts a day behind.
    rebooted = Timekeeper(FixedClock(T0 - 86400), Meta(tmp_path), probe=lambda: False)
    assert rebooted.now() == T0
    assert rebooted.state is ClockState.UNTRUSTED and not rebooted.trusted


def test_signed_answer_to_our_nonce_makes_an_unsynchronised_clock_trusted(
    tmp_path: Path,
) -> None:
    ops = make_ops_keys(tmp_path)
    clock = FixedClock(T0 - 3600)  # an hour slow, not synchronised
    keeper = Timekeeper(clock, None, probe=lambda: False)
    broadcast = parse_time(sign_time(T0, ops.key, ops.kid), ops.keyring, keeper.now())
    assert keeper.accept_time(broadcast).reason == "needs_nonce"  # could be a replay
    request = keeper.time_request(connected_now=True)
    assert request is not None
    msg = parse_time(sign_time(T0, ops.key, ops.kid, nonce=request["nonce"]), ops.keyring,
                     keeper.now())
    assert keeper.accept_time(msg).applied
    assert keeper.state is ClockState.CENTRE and keeper.now() == T0
    clock.advance(10)
    assert keeper.now() == T0 + 10
    # Replaying the same (or an older) message is refused.
    assert keeper.accept_time(msg).reason == "unknown_nonce"
    assert keeper.accept_time(broadcast).reason == "not_newer"


def test_replayed_old_time_message_cannot_move_the_clock_back(tmp_path: Path) -> None:
    ops = make_ops_keys(tmp_path)
    Timekeeper(FixedClock(T0), Meta(tmp_path), probe=lambda: True).persist()
    keeper = Timekeeper(FixedClock(T0), Meta(tmp_path), probe=lambda: False)
    old = parse_time(sign_time(T0 - 7200, ops.key, ops.kid), ops.keyring, T0)
    assert keeper.accept_time(old).reason == "older_than_floor"
    assert keeper.now() == T0


def test_synchronised_clock_ignores_centre_time(tmp_path: Path) -> None:
    ops = make_ops_keys(tmp_path)
    keeper = Timekeeper(FixedClock(T0), None, probe=lambda: True)
    msg = parse_time(sign_time(T0 + 30, ops.key, ops.kid), ops.keyring, T0)
    assert keeper.accept_time(msg).reason == "synchronised"
    assert keeper.state is ClockState.SYNCHRONISED and keeper.now() == T0


def test_failing_clock_probe_means_untrusted() -> None:
    def broken() -> Any:
        raise OSError("no adjtimex")

    keeper = Timekeeper(FixedClock(T0), None, probe=broken)
    assert keeper.state is ClockState.UNTRUSTED


def test_time_message_from_foreign_key_is_refused(tmp_path: Path) -> None:
    ops = make_ops_keys(tmp_path / "a")
    foreign = make_ops_keys(tmp_path / "b", kid="ops-9")
    with pytest.raises(ProtocolError) as exc:
        parse_time(sign_time(T0, foreign.key, "ops-9"), ops.keyring, T0)
    assert exc.value.reason == "unknown_key"


@pytest.mark.parametrize("url, message", [
    ("http://broker", "mqtts://HOST"),
    ("mqtt://", "mqtts://HOST"),
    ("mqtt://broker:99999", "invalid port"),
    ("mqtt://user:pw@broker", "credentials go in"),
])
def test_bad_broker_urls_say_what_is_accepted(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        broker_settings(url)


def test_broker_url_defaults_and_tls_mismatch(tmp_path: Path) -> None:
    assert broker_settings("mqtts://centre.example").port == 8883
    assert broker_settings("mqtt://127.0.0.1").port == 1883
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(UsageError, match="plain TCP"):
        broker_settings("mqtt://h", ca_file=ca)
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    settings = broker_settings("mqtts://h", username="gate", password_file=password)
    assert settings.password == "s3cret" and "s3cret" not in repr(settings)
