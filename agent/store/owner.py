"""Run as the state folder's owner when started as root.

The daemon runs as its own user (systemd ``User=gate-agent``). An installer who runs
``sudo gate-agent verify`` or ``sudo gate-agent revocations apply`` would otherwise leave
root-owned files in the state folder (the writer lock, the replay cache, SQLite's side
files) that the daemon cannot open: its next start fails and the gate stays shut.
"""

from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path

from agent.core.errors import StateError

log = logging.getLogger(__name__)


def become_state_owner(state_dir: Path) -> str | None:
    """As root, switch this process to the owner of ``state_dir`` (or of its nearest
    existing parent); return that user's name, or None when nothing changed."""
    if os.geteuid() != 0:
        return None
    existing = state_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    uid = existing.stat().st_uid
    if uid == 0:
        return None
    try:
        entry = pwd.getpwuid(uid)
        name, gid = entry.pw_name, entry.pw_gid
        os.initgroups(name, gid)
    except KeyError:  # an owner with no passwd entry: its uid and the folder's group
        name, gid = str(uid), existing.stat().st_gid
        os.setgroups([])
    try:
        os.setgid(gid)
        os.setuid(uid)
    except OSError as exc:
        raise StateError(
            f"cannot switch to {name}, the owner of {existing}: {exc.strerror}; "
            f"run the command as that user (sudo -u {name} ...)"
        ) from None
    log.info("running as %s, the owner of %s", name, existing)
    return name
