"""Started as root, state commands act as the state folder's owner (the daemon's user)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from agent.store.owner import become_state_owner

NOBODY = 65534


def _as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("switching users needs root (CI runs as root)")


def test_root_leaves_files_the_daemons_user_owns(tmp_path: Path) -> None:
    _as_root()
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, NOBODY, NOBODY)
    pid = os.fork()
    if pid == 0:  # the child switches users; the test process stays root
        code = 1
        try:
            os.chdir(state)  # pytest's own folders are 0700: work relative to the state
            name = become_state_owner(state)
            Path("probe").write_text(f"{name} {os.geteuid()}")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    probe = state / "probe"
    assert probe.stat().st_uid == NOBODY
    assert probe.read_text() == f"{pwd.getpwuid(NOBODY).pw_name} {NOBODY}"


def test_a_root_owned_state_folder_keeps_root(tmp_path: Path) -> None:
    _as_root()
    assert become_state_owner(tmp_path / "not" / "yet" / "made") is None
    assert os.geteuid() == 0
