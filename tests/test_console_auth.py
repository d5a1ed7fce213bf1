"""The console's login limiter and password rules, on a controlled clock."""

from __future__ import annotations

import pytest

from agent.centre.web.auth import MAX_KEYS, LoginLimiter, hash_password, verify_password
from agent.core.errors import UsageError


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_five_failures_block_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    limiter = LoginLimiter(attempts=5, window_s=300, clock=clock)
    for _ in range(5):
        assert limiter.blocked_for("name:a", "addr:1") == 0
        limiter.failed("name:a", "addr:1")
        clock.t += 10
    assert limiter.blocked_for("name:a") == pytest.approx(250)
    assert limiter.blocked_for("name:b", "addr:1") == pytest.approx(250)  # same address
    assert limiter.blocked_for("name:b", "addr:2") == 0
    clock.t += 251
    assert limiter.blocked_for("name:a", "addr:1") == 0
    limiter.succeeded("name:a")
    assert limiter.blocked_for("name:a") == 0


def test_many_names_tried_do_not_grow_the_limiter_without_bound() -> None:
    clock = Clock()
    limiter = LoginLimiter(attempts=5, window_s=60, clock=clock)
    for n in range(30_000):  # 100 a second: 6,000 inside any 60 s window
        limiter.failed(f"name:{n}")
        clock.t += 0.01
        assert len(limiter._failures) <= MAX_KEYS + 1
    assert limiter.blocked_for("name:29999") == 0  # one failure is not a block
    limiter.failed(*["name:29999"] * 4)
    assert limiter.blocked_for("name:29999") > 0  # the recent ones are still counted


def test_passwords_are_argon2_and_checked_for_length() -> None:
    hashed = hash_password("a good long password")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "a good long password")
    assert not verify_password(hashed, "a good long passwore")
    assert not verify_password(None, "a good long password")  # unknown user
    assert not verify_password("not a hash", "whatever")
    with pytest.raises(UsageError, match="at least 10"):
        hash_password("short")
    with pytest.raises(UsageError, match="at most 256"):
        hash_password("x" * 257)
