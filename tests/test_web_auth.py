"""The installer page's login rules without a server: one-time token, sessions, delays."""

from __future__ import annotations

import stat
from pathlib import Path

from agent.runtime.web.auth import (
    MAX_DELAY_S,
    MAX_SESSIONS,
    SESSION_IDLE_S,
    LoginLimiter,
    OneTimeToken,
    Sessions,
    csrf_ok,
    write_token,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_token_works_once_and_a_restored_copy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "web-token"
    token = write_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    check = OneTimeToken(path)
    assert check.available
    assert not check.redeem("wrong")
    assert not check.redeem(token[:-1])
    assert not check.redeem("")
    assert check.redeem(token)
    assert not path.exists() and not check.available
    assert not check.redeem(token)
    path.write_text(token + "\n")  # an SD card backup put back
    assert not check.redeem(token)
    fresh = write_token(path)
    assert fresh != token and OneTimeToken(path).redeem(fresh)


def test_provisioned_token_file_is_read_as_written(tmp_path: Path) -> None:
    path = tmp_path / "web-token"
    path.write_text("  provisioned-token-123\n")
    assert OneTimeToken(path).redeem("provisioned-token-123")


def test_wrong_tokens_wait_longer_each_time_up_to_a_bound() -> None:
    clock = Clock()
    limiter = LoginLimiter(clock)
    assert limiter.wait_s("10.0.0.5") == 0
    delays = [limiter.failed("10.0.0.5") for _ in range(9)]
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0] and delays[-1] == MAX_DELAY_S
    assert limiter.wait_s("10.0.0.5") == MAX_DELAY_S
    assert limiter.wait_s("10.0.0.6") == 0  # another client is not slowed by this one
    clock.now += MAX_DELAY_S
    assert limiter.wait_s("10.0.0.5") == 0
    limiter.succeeded("10.0.0.5")
    assert limiter.failed("10.0.0.5") == 1.0


def test_sessions_expire_when_idle_and_the_oldest_goes_first() -> None:
    clock = Clock()
    sessions = Sessions(clock)
    sid, session = sessions.create()
    assert sessions.get(sid) is session and sessions.get("forged") is None
    assert sessions.get(None) is None
    clock.now += SESSION_IDLE_S - 1
    assert sessions.get(sid) is session  # used: idle time starts again
    clock.now += SESSION_IDLE_S + 1
    assert sessions.get(sid) is None
    ids = [sessions.create()[0] for _ in range(MAX_SESSIONS + 1)]
    assert sessions.get(ids[0]) is None and all(sessions.get(i) for i in ids[1:])
    sessions.drop(ids[1])
    assert sessions.get(ids[1]) is None


def test_csrf_token_must_match_the_sessions_own() -> None:
    sessions = Sessions(Clock())
    _, one = sessions.create()
    _, two = sessions.create()
    assert csrf_ok(one, one.csrf)
    assert not csrf_ok(one, two.csrf) and not csrf_ok(one, None) and not csrf_ok(one, "")
