"""Run the real daemon as a process: config file, generated clip, JSON lines on stdout.

Relay pulses of a separate daemon process on mock pins are observed through its
``--json`` stdout: ``{"type": "door", "state": "unlocked"|"locked"}`` is written from the
relay driver's own change callback, and every decision line is printed after the entry
was appended and before the pulse it causes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from agent.demo.clip import schedule, write_clip
from agent.demo.kit import DemoKit, make_kit
from tests.conftest import ROOT

GATE_AGENT = str(Path(sys.executable).parent / "gate-agent")


def toml_text(raw: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for section, values in raw.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, int | float):
                lines.append(f"{key} = {value}")
            else:
                lines.append(f"{key} = {json.dumps(str(value))}")
        lines.append("")
    return "\n".join(lines)


def gate_files(tmp_path: Path, broker_url: str | None = None, *, with_list: bool = True,
               **sections: dict[str, Any]) -> tuple[DemoKit, Path]:
    """Keys and a config file for one gate; static credentials accepted (replay-free).

    ``with_list``: the gate has its provisioning revocation list (an empty version 1), as
    a provisioned gate does; without one every grant is ``revocations_unknown``.
    """
    kit = make_kit(tmp_path / "kit")
    if with_list:
        install_list(kit, tmp_path / "state", kit.revocation_list(1, time.time(), ()))
    base = {"policy": {"on_untrusted_clock": "allow", "accept_static": True}}
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    raw = kit.config(tmp_path / "state", **base)
    if broker_url:
        raw["mqtt"] = {"url": broker_url, "keepalive_s": 5, "ack": "puback"}  # no centre here
    config = tmp_path / "config.toml"
    config.write_text(toml_text(raw))
    return kit, config


def install_list(kit: DemoKit, state: Path, signed: bytes) -> None:
    """Install a signed list as ``gate-agent revocations apply`` does (daemon stopped)."""
    from agent.protocol.keys import load_keyring
    from agent.protocol.revocation import parse_revocation_list
    from agent.store import RevocationStore

    keyring = load_keyring(kit.issuers_dir, kit.ops_dir)
    with RevocationStore(state) as store:
        store.apply(parse_revocation_list(signed, keyring, time.time()))


def clip(tmp_path: Path, texts: list[str], show_s: float = 0.6, gap_s: float = 0.9) -> Path:
    shots = schedule([(f"code {n}", t) for n, t in enumerate(texts)], show_s=show_s,
                     gap_s=gap_s)
    return write_clip(shots, tmp_path / "clip", fps=10, width=640, height=480)


class DaemonProcess:
    """``gate-agent run`` on mock pins; collects its JSON lines as they come."""

    def __init__(self, config: Path, *args: str) -> None:
        # PYTHONPATH: this checkout's packages even where an old editable install saw
        # ``agent`` as a namespace package.
        env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock", PYTHONPATH=str(ROOT))
        self.log = config.parent / "daemon.log"
        with open(self.log, "a", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                [GATE_AGENT, "run", "--config", str(config), "--json", *args],
                stdout=subprocess.PIPE, stderr=log, env=env, text=True,
            )
        self.lines: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(json.loads(line))
                self._cond.notify_all()

    def wait_lines(self, predicate: Any, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.lines), timeout)

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._cond:
            return [line for line in self.lines if line.get("type") == kind]

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stderr(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait(10)


def wait_until(predicate: Any, timeout: float = 20.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
