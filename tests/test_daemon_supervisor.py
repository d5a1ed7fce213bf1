"""The daemon's supervisor under systemd: READY, then STATUS lines on their period, and
watchdog pings from the controller loop, on the notify socket systemd gives it."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from agent.core.config import config_from_mapping
from agent.demo.kit import make_kit
from agent.runtime import supervisor
from agent.runtime.daemon import Daemon, DaemonOptions
from agent.runtime.sdnotify import Notifier
from tests.daemon_support import install_list


def test_daemon_under_systemd_sends_status_lines_and_watchdog_pings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "STATUS_EVERY_S", 0.3)
    kit = make_kit(tmp_path / "kit")
    install_list(kit, tmp_path / "state", kit.revocation_list(1, time.time(), ()))
    config = config_from_mapping(kit.config(tmp_path / "state", scanner={"kind": "none"}),
                                 base_dir=tmp_path)
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(10)
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "3000000"})
        daemon = Daemon(config, DaemonOptions(pins="mock", mqtt=None), notifier=notifier)
        stop = threading.Event()
        daemon.open()
        runner = threading.Thread(target=daemon.serve, args=(stop,), daemon=True)
        seen: list[bytes] = []
        try:
            daemon.start()
            runner.start()
            while not (any(m.startswith(b"STATUS=door locked") for m in seen)
                       and b"WATCHDOG=1" in seen):
                seen.append(server.recv(4096))  # socket.timeout fails the test
        finally:
            stop.set()
            runner.join(10)
            daemon.shutdown()
    assert any(m.startswith(b"READY=1\nSTATUS=door locked, mode normal") for m in seen)
    assert not runner.is_alive()
