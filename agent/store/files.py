"""Crash-safe file primitives: atomic replace, directory fsync, moving bad files aside.

Power may be cut at any instant on an SD card. A file is therefore never rewritten in
place: the new bytes go to a temp file in the same folder, are fsynced, renamed over the
old file (atomic on POSIX), and the folder is fsynced so the rename itself is durable.
After a cut, the file holds exactly the old or exactly the new bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

from agent.core.errors import StateError, StateInUseError

log = logging.getLogger(__name__)

TEMP_MARK = ".tmp-"


def fsync_dir(folder: Path) -> None:
    """Make renames and new names inside ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """The temp name used while ``path`` is being replaced (same folder, hidden)."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old or the new content."""
    atomic_write_parts(path, (data,))


def atomic_write_parts(path: Path, parts: Iterable[bytes | bytearray | memoryview]) -> None:
    """``atomic_write`` of the concatenation of ``parts``, never joined in memory (a
    revocation table is tens of megabytes)."""
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as handle:
            for part in parts:
                handle.write(part)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StateError(
            f"cannot write {path}: {exc.strerror or exc}: check that {path.parent} "
            "is writable and the disk is not full"
        ) from exc


def remove_stale_temps(path: Path) -> None:
    """Delete temp files a killed writer of ``path`` left behind (they were never live)."""
    pattern = f".{path.name}{TEMP_MARK}*"
    for stale in path.parent.glob(pattern):
        with contextlib.suppress(OSError):
            stale.unlink()
            log.info("removed unfinished temp file %s from an interrupted write", stale)


def move_aside(path: Path, now: float) -> Path:
    """Rename an untrustworthy file to ``NAME.corrupt-YYYYmmddTHHMMSSZ`` and keep it.

    The bad file is kept for diagnosis; the caller then starts from what it can trust.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{counter}")
    try:
        os.replace(path, target)
        fsync_dir(path.parent)
    except OSError as exc:
        raise StateError(
            f"{path} is corrupt and cannot be moved aside ({exc.strerror or exc}): "
            "check the permissions of its folder or remove it by hand"
        ) from exc
    log.error("state file %s was corrupt; moved it to %s", path, target.name)
    return target


def ensure_dir(folder: Path) -> None:
    """Create the state folder (and parents) if needed, with a clear error if impossible."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(
            f"cannot create state folder {folder}: {exc.strerror or exc}: "
            "set [state] dir to a writable folder"
        ) from exc


class WriterLock:
    """An exclusive advisory lock on a file: one writing process per state folder.

    The kernel releases it when the process dies, so a crash never leaves it stuck.
    """

    def __init__(self, path: Path, what: str) -> None:
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(
                f"cannot open the lock file {path}: {exc.strerror or exc}: run as the "
                "gate-agent user (or root), or set [state] dir to a writable folder"
            ) from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise StateInUseError(
                f"{what} in {path.parent} is in use by another process "
                "(is the gate-agent daemon running?): stop it first "
                "(systemctl stop gate-agent), or send the change through the centre"
            ) from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
