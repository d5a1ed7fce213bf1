"""Helpers for the centre tests: a centre.toml with fresh keys, ``gate-centre run`` as a
process, and gates whose real outbox is drained by the real SyncService with the
centre acknowledgement (``ack = "centre"``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.centre.store import connect
from agent.centre.store.schema import upgrade
from agent.core.events import Inbound
from agent.protocol.command import CommandRefused, parse_command
from agent.protocol.keys import KeyRing
from agent.store.replay import ReplayCache
from agent.store.resend import ResendableOutbox
from agent.sync.broker import broker_settings
from agent.sync.service import SyncService
from agent.sync.uplink import CentreAcknowledger
from tests.conftest import ROOT
from tests.daemon_support import wait_until
from tests.sync_support import OpsKeys, backlog, make_ops_keys, make_outbox


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on an SQLite file and on a real PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/centre.db"
    return str(request.getfixturevalue("postgres_url"))


@dataclass
class CentreFiles:
    config: Path
    ops: OpsKeys
    store_url: str


def centre_files(tmp: Path, broker_url: str, store_url: str, *, hole_after_s: float = 300,
                 sweep_every_s: float = 0.2, resend_every_s: float = 1.0,
                 publish_every_s: float = 60, attempts: int = 3, audit_every_s: float = 600,
                 upgrade_db: bool = True,
                 group: str = "ingest") -> CentreFiles:
    ops = make_ops_keys(tmp / "keys", kid="ops-centre")
    config = tmp / "centre.toml"
    config.write_text(f"""
[centre]
id = "test"
[store]
url = "{store_url}"
[mqtt]
url = "{broker_url}"
keepalive_s = 5
share_group = "{group}"
reconnect_max_s = 1
[keys]
ops_key = "{ops.key_file}"
trust_ops_dir = "{ops.ops_dir}"
[sweep]
hole_after_s = {hole_after_s}
every_s = {sweep_every_s}
resend_every_s = {resend_every_s}
resend_attempts = {attempts}
audit_every_s = {audit_every_s}
[time]
publish_every_s = {publish_every_s}
""", encoding="utf-8")
    if upgrade_db:
        db = connect(store_url)
        upgrade(db)
        db.close()
    return CentreFiles(config, ops, store_url)


class CentreProcess:
    """``gate-centre run`` in its own process (to SIGKILL it mid-stream)."""

    def __init__(self, config: Path, name: str = "centre") -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.log = config.parent / f"{name}.log"
        with open(self.log, "a", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent.cli.gate_centre", "run", "--config", str(config)],
                stdout=subprocess.PIPE, stderr=log, env=env, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "started", f"gate-centre did not start: {self.stderr()}"

    def stderr(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(20)


class Gate:
    """A gate's real outbox (EntryLog) and sync worker with ``ack = "centre"``; signed
    ``resend`` commands are verified and applied as the gate's handler does (requeue)."""

    def __init__(self, tmp: Path, broker_url: str, site: str, gate: str, *,
                 ack_timeout_s: float = 2.0, keyring: KeyRing | None = None) -> None:
        self.site, self.gate = site, gate
        self.outbox = make_outbox(tmp / f"{site}-{gate}")
        self.resendable = ResendableOutbox(self.outbox)
        self.keyring = keyring
        self.replay = ReplayCache(tmp / f"{site}-{gate}-replay")
        self.commands: list[tuple[str, int | None, int | None]] = []
        self.sync = SyncService(
            broker_settings(broker_url, keepalive_s=5), site, gate, self.resendable,
            self._inbound, self._status,
            acknowledger=CentreAcknowledger(time.monotonic, ack_timeout_s),
            reconnect_max_s=0.5, poll_s=0.05)

    def _status(self) -> dict[str, object]:
        """The daemon's live status fields the centre reads (agent.runtime.daemon)."""
        return {"backlog": backlog(self.outbox), "outbox": self.outbox.status().to_json()}

    def _inbound(self, msg: Inbound) -> None:  # paho thread; a test stand-in may do the work
        if msg.kind != "cmd" or self.keyring is None:
            return
        try:
            cmd = parse_command(msg.payload, self.keyring, self.site, self.gate, time.time(),
                                self.replay)
        except CommandRefused as exc:
            self.sync.publish_result(exc.cmd_id or "", False, exc.reason, exc.detail)
            return
        self.commands.append((cmd.action, cmd.seq_from, cmd.seq_to))
        if cmd.action == "resend" and cmd.seq_from and cmd.seq_to:
            _changed, kept = self.resendable.requeue(cmd.seq_from, cmd.seq_to)
            self.sync.notify()
            if kept:
                self.sync.publish_result(cmd.id, True, "ok", f"{kept} will be sent again")
            else:
                self.sync.publish_result(cmd.id, False, "not_found", "pruned here")

    def append(self, n: int) -> list[str]:
        ids = [self.outbox.append({"kind": "scan", "granted": True, "reason": "ok",
                                   "sub": f"c{i % 7}", "site": self.site, "gate": self.gate,
                                   "method": "sim", "door": "unlocked"}).id for i in range(n)]
        self.sync.notify()
        return ids

    def start(self, timeout: float = 10.0) -> Gate:
        self.sync.start()
        assert wait_until(lambda: self.sync.connected, timeout), f"{self.gate} not connected"
        return self

    def stop(self) -> None:
        self.sync.stop()

    @property
    def backlog(self) -> int:
        return int(backlog(self.outbox))


def stored(store_url: str) -> list[tuple[str, str, int, str]]:
    db = connect(store_url)
    try:
        return [(s, g, int(q), i) for s, g, q, i in
                db.query("SELECT site, gate, seq, id FROM entries ORDER BY site, gate, seq")]
    finally:
        db.close()
