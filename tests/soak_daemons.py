"""Real gate daemons for the centre tests: ``gate-agent run`` on mock pins with a serial
QR scanner on a real pseudo-terminal, fed couriers' dynamic presentations (a signed
credential bound to the phone's key, signed again by the phone just now: the default
policy, replay cache included) line by line, syncing with
``ack = "centre"``; its outbox read back with ``gate-agent outbox status --json`` and
``gate-agent log --json`` (read-only, as staff would on the gate)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from agent.demo.kit import DemoKit, make_kit
from tests.conftest import ROOT
from tests.daemon_support import GATE_AGENT, DaemonProcess, install_list, toml_text, wait_until
from tests.sync_support import OpsKeys
from tests.test_hw_serial import Pty


class DaemonGate:
    """One gate daemon whose scanner is a pty; ``ops`` (the centre's key) is trusted for
    lists, commands and time, as a provisioned gate trusts its centre."""

    def __init__(self, work: Path, broker_url: str, ops: OpsKeys, site: str, gate: str, *,
                 ack: str = "centre", ack_timeout_s: float = 3.0) -> None:
        self.site, self.gate = site, gate
        self.root = work / f"daemon-{site}-{gate}"
        self.root.mkdir(parents=True, exist_ok=True)
        self.kit: DemoKit = make_kit(self.root / "kit", site=site, gate=gate)
        (self.kit.ops_dir / f"{ops.kid}.pub").write_bytes(
            (ops.ops_dir / f"{ops.kid}.pub").read_bytes())
        state = self.root / "state"
        install_list(self.kit, state, self.kit.revocation_list(1, time.time(), ()))
        self.pty = Pty(self.root / "ttyACM0")
        raw = self.kit.config(
            state, scanner={"kind": "serial", "dedupe_s": 0.0},
            serial={"port": str(self.pty.link), "baud": 9600, "terminator": "lf"},
            door={"unlock_s": 0.1},
            policy={"on_untrusted_clock": "allow"})
        raw["mqtt"] = {"url": broker_url, "keepalive_s": 5, "ack": ack,
                       "ack_timeout_s": ack_timeout_s, "reconnect_max_s": 1.0}
        self.config = self.root / "config.toml"
        self.config.write_text(toml_text(raw), encoding="utf-8")
        self.daemon: DaemonProcess | None = None
        self.fed = 0

    def start(self, timeout: float = 60.0) -> DaemonGate:
        self.launch()
        return self.wait_scanning(timeout)

    def launch(self) -> None:
        if self.pty.master < 0:  # stopped before: the module is plugged in again
            self.pty.plug()
        self.daemon = DaemonProcess(self.config)

    def wait_scanning(self, timeout: float = 60.0) -> DaemonGate:
        """Return once the scanner reads the pty (a probe code is decided): pyserial
        empties the input when it opens the port, so a code sent before would be lost
        (as a code shown to a module that is still booting is)."""
        assert self.daemon is not None
        deadline = time.monotonic() + timeout
        while True:
            self.feed([self.kit.valid_code("probe", time.time())])
            if self.daemon.wait_lines(
                    lambda lines: any(x.get("type") == "decision" for x in lines), 2):
                return self
            assert self.daemon.proc.poll() is None, self.daemon.stderr()
            assert time.monotonic() < deadline, f"scanner not reading: {self.daemon.stderr()}"

    def scan(self, sub: str) -> dict[str, Any]:
        """Show one fresh presentation of ``sub`` to the scanner; its decision line."""
        assert self.daemon is not None
        before = len(self.daemon.of("decision"))
        self.feed([self.kit.valid_code(sub, time.time())])
        assert self.daemon.wait_lines(
            lambda lines: sum(x.get("type") == "decision" for x in lines) > before, 20), \
            self.daemon.stderr()
        return self.daemon.of("decision")[before]

    def feed(self, texts: list[str]) -> None:
        """Write codes as the module sends them (a blocking write is back-pressure)."""
        for text in texts:
            self.pty.send(text.encode("ascii") + b"\n")
            self.fed += 1

    def feed_credentials(self, n: int, every_s: float = 0.02,
                         stop: threading.Event | None = None) -> None:
        for i in range(n):
            if stop is not None and stop.is_set():
                return
            self.feed([self.kit.valid_code(f"D-{self.gate}-{i}", time.time())])
            time.sleep(every_s)

    def decisions(self) -> int:
        return 0 if self.daemon is None else len(self.daemon.of("decision"))

    def wait_decisions(self, n: int, timeout: float) -> bool:
        return wait_until(lambda: self.decisions() >= n, timeout, step=0.2)

    def kill(self) -> None:
        if self.daemon is not None:
            self.daemon.kill()

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if it has not stopped within 30 s; close the pty."""
        if self.daemon is not None and self.daemon.proc.poll() is None:
            self.daemon.proc.terminate()
            try:
                self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
        self.pty.close()

    def _cli(self, *args: str) -> str:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        done = subprocess.run([GATE_AGENT, *args, "--config", str(self.config)],
                              capture_output=True, text=True, env=env, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def outbox_status(self) -> dict[str, Any]:
        """``gate-agent outbox status --json``: what staff see on the gate."""
        return dict(json.loads(self._cli("outbox", "status", "--json")))

    def log(self) -> list[dict[str, Any]]:
        """Every entry the gate keeps (``gate-agent log --json``), oldest first."""
        return [json.loads(line) for line in self._cli("log", "--json").splitlines() if line]
