"""The installer page's relay test as the controller handles it: a ``LocalOpen`` event."""

from __future__ import annotations

from pathlib import Path

from agent.core.events import LocalOpen
from tests.controller_support import controller_rig


def test_local_open_is_recorded_then_pulses_once_and_answers(tmp_path: Path) -> None:
    answers: list[bool] = []
    with controller_rig(tmp_path, door={"unlock_s": 0.2}) as rig:
        rig.controller.process(LocalOpen("relay_test", answers.append))
        assert answers == [True]
        rows = rig.rows()
        assert [(r["kind"], r["command"], r["method"], r["door"], r["granted"])
                for r in rows] == [("command", "relay_test", "remote", "unlocked", True)]
        assert [state for _, state in rig.relay_pin.states].count(True) == 1


def test_local_open_in_lockdown_is_refused_recorded_and_leaves_the_relay(tmp_path: Path) -> None:
    answers: list[bool] = []
    with controller_rig(tmp_path, policy={"mode": "lockdown"}) as rig:
        rig.controller.process(LocalOpen("relay_test", answers.append))
        assert answers == [False]
        assert [(r["reason"], r["door"]) for r in rig.rows()] == [("lockdown", "none")]
        assert not rig.relay_went_high()
