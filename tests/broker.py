"""A real Mosquitto broker for tests: free loopback port, config and data under tmp_path.

Use the ``broker`` fixture (registered via ``pytest_plugins`` in conftest) or build a
``Broker`` yourself for special configs (ACLs, TLS). ``stop()`` is a clean SIGTERM,
``kill()`` a SIGKILL (no autosave: whatever the broker had in memory is gone), and
``start()`` brings it back on the same port. For TLS, put the listener's ``certfile``,
``cafile`` ... in ``listener_options`` and pass ``tls=True`` so ``url`` is ``mqtts://``;
those options come after the fixture's defaults and override them. A missing mosquitto
skips locally and fails under CI=true (``tests.conftest.require``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def mosquitto_path() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_CANDIDATES if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.02)


class Broker:
    """One mosquitto process; restartable on the same port."""

    def __init__(self, workdir: Path, *, extra_config: str = "", port: int | None = None,
                 listener_options: str = "allow_anonymous true", tls: bool = False) -> None:
        exe = mosquitto_path()
        require(exe is not None, "mosquitto", "apt-get install mosquitto (or scripts/bootstrap.sh)")
        assert exe is not None
        self.exe = exe
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls  # listener_options make the listener TLS; this only names the scheme
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        # Defaults first, so a caller's options (say, a config from the docs) override them.
        self.conf.write_text(
            "persistence false\n"
            f"persistence_location {workdir}/\n"
            "set_tcp_nodelay true\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            f"listener {self.port} 127.0.0.1\n"
            f"{listener_options}\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            # Started as root, mosquitto drops to its own user and can then read nothing
            # under tmp_path (password files, certificates) nor write its log.
            f"{'user root' if os.geteuid() == 0 else ''}\n"
            f"{extra_config}\n",
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        with (self.workdir / "stderr.log").open("ab") as stderr:
            self.proc = subprocess.Popen(
                [self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=stderr
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited at start: see {self.log} and {self.workdir}/stderr.log"
                )
            try:
                wait_for_port(self.port, timeout=0.2)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _end(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A running Mosquitto on a free loopback port, always stopped afterwards."""
    instance = Broker(tmp_path / "broker")
    instance.start()
    try:
        yield instance
    finally:
        with contextlib.suppress(Exception):
            instance.kill()
