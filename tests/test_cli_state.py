"""The state commands as installers run them: revocations apply/status, log, outbox status."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import gate_agent, gatectl
from agent.core.timefmt import parse_instant
from agent.store import EntryLog, RevocationStore
from tests.conftest import ROOT

AT = "2027-03-01T08:00:00Z"


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    """A gate that accepts static codes, trusting one issuer and one ops key."""
    for kid, folder in (("iss1", "issuers"), ("ops1", "ops"), ("rogue", "elsewhere")):
        assert gatectl.main(["keys", "new", "--kid", kid, "--out", str(tmp_path / folder)]) == 0
        (tmp_path / folder / f"{kid}.key").rename(tmp_path / f"{kid}.key")
    (tmp_path / "config.toml").write_text(
        '[gate]\nsite = "binhai-0001"\nid = "north-1"\n'
        '[trust]\nkeys_dir = "issuers"\nops_keys_dir = "ops"\n'
        '[policy]\naccept_static = true\n'
        '[state]\ndir = "state"\noutbox_capacity = 3\n'
    )
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = gate_agent.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def make_list(gate: Path, name: str, *args: str, key: str = "ops1") -> Path:
    out = gate / name
    key_file = str(gate / f"{key}.key")
    code = gatectl.main(["revocations", *args, "--key", key_file, "--out", str(out)])
    assert code == 0
    return out


def status(gate: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    code, out, _ = run(capsys, "revocations", "status", "--config", str(gate / "config.toml"),
                       "--json")
    assert code == 0
    result: dict[str, object] = json.loads(out)
    return result


def test_apply_and_status_through_full_and_delta(
    gate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(gate / "config.toml")
    assert status(gate, capsys) | {"version": None, "entries": 0, "age_s": None} == status(
        gate, capsys)
    full = make_list(gate, "v3.rl", "full", "--version", "3", "--cti", "00aa11bb", "--sub", "C7")
    code, out, err = run(capsys, "revocations", "apply", str(full), "--config", config)
    assert (code, err) == (0, "")
    assert "installed revocation list version 3 (full), 2 entries" in out
    now = status(gate, capsys)
    assert (now["version"], now["entries"], now["stale"]) == (3, 2, False)
    assert isinstance(now["age_s"], float) and 0 <= now["age_s"] < 600

    delta = make_list(gate, "v4.rl", "delta", "--base", "3", "--version", "4",
                      "--cti", "cc", "--remove-sub", "C7")
    assert run(capsys, "revocations", "apply", str(delta), "--config", config)[0] == 0
    assert (status(gate, capsys)["version"], status(gate, capsys)["entries"]) == (4, 2)
    code, out, _ = run(capsys, "revocations", "status", "--config", config)
    assert code == 0 and out.startswith("version 4, 2 entries, issued ")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("same", "older than or equal to the installed version 3"),
        ("gap", "installed version 3, delta needs base 7: wait for or request a full list"),
        ("tampered", "revocation list refused"),
        ("truncated", "revocation list refused"),
        ("foreign", "revocation list refused"),
        ("missing", "cannot read"),
    ],
)
def test_bad_lists_are_refused_with_one_line_and_change_nothing(
    gate: Path, capsys: pytest.CaptureFixture[str], damage: str, message: str
) -> None:
    config = str(gate / "config.toml")
    good = make_list(gate, "v3.rl", "full", "--version", "3", "--cti", "00aa11bb")
    assert run(capsys, "revocations", "apply", str(good), "--config", config)[0] == 0
    if damage == "same":
        bad = good
    elif damage == "gap":
        bad = make_list(gate, "d.rl", "delta", "--base", "7", "--version", "8", "--cti", "dd")
    elif damage == "foreign":
        bad = make_list(gate, "f.rl", "full", "--version", "9", "--cti", "dd", key="rogue")
    elif damage == "missing":
        bad = gate / "nope.rl"
    else:
        data = bytearray(make_list(gate, "t.rl", "full", "--version", "9", "--cti", "dd")
                         .read_bytes())
        if damage == "tampered":
            data[len(data) // 2] ^= 0x01
        else:
            del data[len(data) * 2 // 3 :]
        bad = gate / "bad.rl"
        bad.write_bytes(bytes(data))
    code, _, err = run(capsys, "revocations", "apply", str(bad), "--config", config)
    assert code == (2 if damage == "missing" else 1)
    assert err.count("\n") == 1 and err.startswith("gate-agent: ") and message in err
    assert (status(gate, capsys)["version"], status(gate, capsys)["entries"]) == (3, 1)


def test_revoked_credential_verifies_as_revoked(
    gate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(gate / "config.toml")
    capsys.readouterr()
    assert gatectl.main(["credential", "issue", "--key", str(gate / "iss1.key"), "--sub", "C42",
                         "--scope", "binhai-0001", "--not-before", "2027-03-01T00:00:00Z"]) == 0
    code_text = capsys.readouterr().out.strip()
    code, out, _ = run(capsys, "verify", "--config", config, "--at", AT, code_text)
    assert json.loads(out)["reason"] == "revocations_unknown"  # a gate never given a list
    empty = make_list(gate, "v1.rl", "full", "--version", "1")
    assert run(capsys, "revocations", "apply", str(empty), "--config", config)[0] == 0
    code, out, _ = run(capsys, "verify", "--config", config, "--at", AT, code_text)
    before = json.loads(out)
    assert (code, before["granted"]) == (0, True)
    lst = make_list(gate, "v2.rl", "full", "--version", "2", "--cti", before["cti"])
    assert run(capsys, "revocations", "apply", str(lst), "--config", config)[0] == 0
    code, out, _ = run(capsys, "verify", "--config", config, "--at", AT, code_text)
    assert (code, json.loads(out)["reason"]) == (1, "revoked")


def test_apply_refuses_while_the_daemon_holds_the_state(
    gate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lst = make_list(gate, "v1.rl", "full", "--version", "1", "--cti", "aa")
    with RevocationStore(gate / "state"):  # as the running daemon does
        code, _, err = run(capsys, "revocations", "apply", str(lst), "--config",
                           str(gate / "config.toml"))
    assert code == 1 and "in use by another process" in err


def record(gate: Path) -> None:
    with EntryLog(gate / "state", capacity=3) as log:
        log.append({"kind": "scan", "granted": True, "reason": "ok", "sub": "C42",
                    "method": "camera", "door": "unlocked"},
                   at=parse_instant("2025-03-01T07:00:00.000Z"))
        log.append({"kind": "scan", "granted": False, "reason": "revoked", "sub": "C7",
                    "method": "serial", "door": "none"},
                   at=parse_instant("2025-03-01T08:30:00.000Z"))
        log.append({"kind": "alarm", "alarm": "tamper"},
                   at=parse_instant("2025-03-01T09:00:00.000Z"))
        log.ack([1])


def test_log_prints_the_local_entry_log(gate: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(gate / "config.toml")
    assert run(capsys, "log", "--config", config, "--json") == (0, "", "")
    record(gate)
    code, out, _ = run(capsys, "log", "--config", config, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [(r["seq"], r["sent"]) for r in rows] == [(1, True), (2, False), (3, False)]
    assert rows[1] | {"reason": "revoked", "sub": "C7", "method": "serial"} == rows[1]
    assert all(len(r["id"]) == 32 for r in rows)
    code, out, _ = run(capsys, "log", "--config", config, "--since", "2025-03-01T08:00Z")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert "#2" in lines[0] and "denied" in lines[0] and "revoked" in lines[0]
    assert "sub=C7" in lines[0] and "waiting" in lines[0]
    assert "alarm" in lines[1] and "tamper" in lines[1]
    code, _, err = run(capsys, "log", "--config", config, "--since", "yesterday")
    assert code == 2 and "ISO 8601" in err


def test_outbox_status(gate: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(gate / "config.toml")
    code, out, _ = run(capsys, "outbox", "status", "--config", config, "--json")
    empty = json.loads(out)
    assert code == 0 and empty | {"backlog": 0, "capacity": 3, "full": False} == empty
    record(gate)
    code, out, _ = run(capsys, "outbox", "status", "--config", config, "--json")
    now = json.loads(out)
    assert (now["backlog"], now["last_seq"], now["full"]) == (2, 3, False)
    assert now["disk_bytes"] > 0 and now["oldest_age_s"] > 0
    code, out, _ = run(capsys, "outbox", "status", "--config", config)
    assert code == 0 and out.startswith("backlog 2 entries, oldest ")


def test_commands_run_as_installed_with_one_line_errors(tmp_path: Path) -> None:
    """The console script itself: help, and a config error as one stderr line, exit 2."""
    exe = Path(sys.executable).parent / "gate-agent"
    started = time.monotonic()
    for args in (["log", "--help"], ["outbox", "status", "--help"],
                 ["revocations", "apply", "--help"]):
        result = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60,
                                cwd=ROOT)
        assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [str(exe), "outbox", "status", "--config", str(tmp_path / "none.toml")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "does not exist" in result.stderr
    assert time.monotonic() - started < 120
