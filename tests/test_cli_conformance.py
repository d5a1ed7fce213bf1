"""The mistakes people make with the two commands, as INTERFACE.md promises to answer them:
one line on stderr saying what was wrong and what to do, exit 2 for a wrong argument or
config, 1 for a "no", never a traceback. Run through the installed console scripts."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import gatectl
from agent.sync.broker import broker_settings
from agent.sync.service import SyncService
from tests.broker import Broker
from tests.sync_support import make_outbox

BIN = Path(sys.executable).parent
UNREACHABLE = "mqtt://127.0.0.1:9"


def _run(tool: str, *args: str, cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env=env)


def _one_line_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """Keys made with gatectl, private keys apart from the trusted public ones, a config."""
    for kid, folder in (("iss1", "issuers"), ("ops1", "ops")):
        assert _run("gatectl", "keys", "new", "--kid", kid, "--out", folder,
                    cwd=tmp_path).returncode == 0
        (tmp_path / folder / f"{kid}.key").rename(tmp_path / f"{kid}.key")
    (tmp_path / "config.toml").write_text(
        '[gate]\nsite = "s1"\nid = "g1"\n'
        '[trust]\nkeys_dir = "issuers"\nops_keys_dir = "ops"\n'
        '[state]\ndir = "state"\n[camera]\ndevice = 57\n'
    )
    return tmp_path


def test_usage_errors_are_one_line_with_the_help_to_read(site: Path) -> None:
    done = _run("gatectl", "keys", "new", cwd=site)
    _one_line_error(done, 2, "--kid, --out", "gatectl keys new --help")
    done = _run("gatectl", "mode", "s1/g1", "lock", "--key", "ops1.key", "--broker",
                UNREACHABLE, cwd=site)
    _one_line_error(done, 2, "invalid choice: 'lock'")
    # A QR text holds spaces: unquoted, its pieces are extra arguments.
    done = _run("gate-agent", "verify", "--config", "config.toml", "QM1:AB", "CD", cwd=site)
    _one_line_error(done, 2, "unrecognized arguments: CD", "quote")


def test_a_public_key_where_the_private_key_belongs_is_named_as_such(site: Path) -> None:
    done = _run("gatectl", "credential", "issue", "--key", "issuers/iss1.pub", "--sub", "C1",
                "--scope", "s1", cwd=site)
    _one_line_error(done, 2, "issuers/iss1.pub: this is a public key", "KID.key")
    done = _run("gatectl", "credential", "issue", "--key", "config.toml", "--sub", "C1",
                "--scope", "s1", cwd=site)
    _one_line_error(done, 2, "not an unencrypted PKCS#8 PEM private key")


def test_a_private_key_readable_by_others_is_refused_with_the_fix(site: Path) -> None:
    os.chmod(site / "ops1.key", 0o644)
    done = _run("gatectl", "revocations", "full", "--key", "ops1.key", "--version", "1",
                "--out", "list.cbor", cwd=site)
    _one_line_error(done, 2, "readable by others", "chmod 600 ops1.key")
    assert not (site / "list.cbor").exists()


def test_keys_new_into_a_file_or_an_impossible_folder(site: Path) -> None:
    done = _run("gatectl", "keys", "new", "--kid", "k", "--out", "config.toml", cwd=site)
    _one_line_error(done, 2, "config.toml is a file, not a folder")
    done = _run("gatectl", "holder", "new", "--out", "config.toml/phone", cwd=site)
    _one_line_error(done, 2, "cannot make the key folder", "--out")


@pytest.mark.parametrize("args", [
    ("gate-agent", "verify", "--config", "config.toml", "--at", "2027-03-01T08:00", "QM1:X"),
    ("gate-agent", "log", "--config", "config.toml", "--since", "2027-03-01"),
    ("gatectl", "credential", "issue", "--key", "iss1.key", "--sub", "C1", "--scope", "s1",
     "--not-before", "2027-03-01T08:00:00"),
    ("gatectl", "revocations", "full", "--key", "ops1.key", "--version", "1",
     "--sub", "C1@2027-03-01T08:00", "--out", "list.cbor"),
])
def test_a_time_without_a_zone_is_refused_not_taken_as_utc(
        site: Path, args: tuple[str, ...]) -> None:
    # Typed as local time in +08:00 and read as UTC, a revocation cut-off would move 8 h.
    done = _run(*args, cwd=site)
    _one_line_error(done, 2, "has no time zone", "Z", "+08:00")
    assert not (site / "list.cbor").exists()


def test_a_time_with_a_zone_is_accepted(site: Path) -> None:
    done = _run("gatectl", "revocations", "full", "--key", "ops1.key", "--version", "1",
                "--sub", "C1@2027-03-01T08:00+08:00", "--out", "list.cbor", cwd=site)
    assert done.returncode == 0, done.stderr


def test_revocations_apply_given_a_credential_or_an_image_says_so(site: Path) -> None:
    issued = _run("gatectl", "credential", "issue", "--key", "iss1.key", "--sub", "C1",
                  "--scope", "s1", "--qr", "cred.png", cwd=site)
    assert issued.returncode == 0, issued.stderr
    (site / "cred.txt").write_text(issued.stdout)
    done = _run("gate-agent", "revocations", "apply", "cred.txt", "--config", "config.toml",
                cwd=site)
    _one_line_error(done, 2, "cred.txt is a courier's QR code text",
                    "gatectl revocations full|delta")
    done = _run("gate-agent", "revocations", "apply", "cred.png", "--config", "config.toml",
                cwd=site)
    _one_line_error(done, 2, "cred.png is not a signed revocation list")
    status = _run("gate-agent", "revocations", "status", "--config", "config.toml", "--json",
                  cwd=site)
    assert json.loads(status.stdout)["version"] is None  # nothing installed


def test_revocations_apply_of_a_real_list_signed_by_the_wrong_role_is_a_refusal(
        site: Path) -> None:
    made = _run("gatectl", "revocations", "full", "--key", "iss1.key", "--version", "1",
                "--out", "list.cbor", cwd=site)
    assert made.returncode == 0, made.stderr
    done = _run("gate-agent", "revocations", "apply", "list.cbor", "--config", "config.toml",
                cwd=site)
    _one_line_error(done, 1, "refused (unknown_key)")


def test_revocations_apply_refuses_a_file_over_the_cap_without_reading_it_whole(
        site: Path) -> None:
    from agent.protocol.revstream import FILE_MAX_BYTES
    big = site / "huge.cbor"
    with big.open("wb") as stream:  # sparse: a signed list's first byte, then a hole
        stream.write(b"\x84")
        stream.truncate(FILE_MAX_BYTES + 10)
    done = _run("gate-agent", "revocations", "apply", "huge.cbor", "--config", "config.toml",
                cwd=site)
    _one_line_error(done, 1, "huge.cbor is over the", "limit of a revocation list file")
    status = _run("gate-agent", "revocations", "status", "--config", "config.toml", "--json",
                  cwd=site)
    assert json.loads(status.stdout)["version"] is None  # nothing installed


@pytest.mark.parametrize("target", ["s1/#", "s1/g1/x", "+", "/g1", "s1/"])
def test_watch_refuses_a_target_that_is_not_a_site_or_gate(site: Path, target: str) -> None:
    # Checked before connecting: a wildcard would watch something else, or crash paho.
    done = _run("gatectl", "watch", target, "--broker", UNREACHABLE, "--duration", "1s",
                cwd=site)
    _one_line_error(done, 2, f"target {target!r} is not SITE, SITE/GATE or SITE/*")


def test_decode_camera_that_cannot_open_is_one_line_without_opencv_noise(site: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}
    done = _run("gate-agent", "decode", "--camera", "--frames", "1", "--config", "config.toml",
                cwd=site, env=env)
    if done.returncode == 0:
        pytest.skip("this machine has a camera at index 57")
    _one_line_error(done, 1, "camera 57 cannot be opened")


def test_demo_with_config_keeps_that_state_and_counts_only_its_own_scans(site: Path) -> None:
    def summary() -> str:
        done = _run("gate-agent", "demo", "--config", "config.toml", "--json", "--duration",
                    "3s", cwd=site, env=dict(os.environ, TMPDIR=str(site)))
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        scans = sum(1 for line in lines if line["type"] == "decision")
        text: str = lines[-1]["text"]
        assert lines[-1]["type"] == "note" and scans >= 1
        assert text.startswith(f"finished: {scans} scans recorded"), text
        assert f"they stay in {site / 'state'}" in text and "removed" not in text
        return text

    summary()
    summary()  # its state already holds the first run's scans: not counted again


def test_watch_shows_the_nested_status_fields_as_words(
        broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = {"door": "locked", "mode": "lockdown", "backlog": 3,
              "revocations": {"version": 7, "age_s": 10.0, "stale": False},
              "clock": {"trusted": True, "clock": "synced"},
              "alarms": {"tamper": "2027-03-01T08:00:00.000Z"}}
    sync = SyncService(broker_settings(broker.url), "s1", "g1", make_outbox(tmp_path),
                       queue.SimpleQueue().put, lambda: dict(status))
    sync.start()
    try:
        deadline = time.monotonic() + 10
        while not sync.connected:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert gatectl.main(["watch", "s1/*", "--broker", broker.url, "--count", "1",
                             "--duration", "10s"]) == 0
    finally:
        sync.stop()
    line = capsys.readouterr().out
    assert ("s1/g1 status online door=locked mode=lockdown revocations=7 backlog=3 "
            "clock=synced alarms=tamper") in line
    assert "{" not in line
