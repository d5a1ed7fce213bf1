"""The one retry backoff (MQTT link, camera, serial scanner): doubling, capped, jittered."""

from __future__ import annotations

import random

from agent.core.backoff import Backoff


def test_delays_double_up_to_the_cap_each_jittered_into_its_upper_half() -> None:
    backoff = Backoff(0.5, 4.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, ceiling in zip(delays, (0.5, 1.0, 2.0, 4.0, 4.0, 4.0), strict=True):
        assert ceiling / 2 <= delay <= ceiling


def test_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(0.5, 30.0, rng=random.Random(2))
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert 0.25 <= backoff.next_delay() <= 0.5


def test_gates_started_together_do_not_retry_in_step() -> None:
    firsts = {round(Backoff(8.0, 30.0, rng=random.Random(seed)).next_delay(), 3)
              for seed in range(20)}
    assert len(firsts) > 10
