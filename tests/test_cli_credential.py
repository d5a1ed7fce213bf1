"""The credential commands as staff and installers run them: gatectl makes keys,
credentials, live codes and lists; gate-agent verify decides on text, stdin or a PNG."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agent.cli import gate_agent, gatectl
from tests.conftest import ROOT

BIN = Path(sys.executable).parent
AT = "2027-03-01T08:00:00Z"


def _run(tool: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / tool), *args], input=stdin, capture_output=True, text=True, timeout=60,
        cwd=ROOT,
    )


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    return make_gate(tmp_path)


def make_gate(tmp_path: Path) -> Path:
    """A gate config with an issuer and an ops key trusted; the private keys beside it."""
    for kid, folder in (("iss1", "issuers"), ("ops1", "ops")):
        assert gatectl.main(["keys", "new", "--kid", kid, "--out", str(tmp_path / folder)]) == 0
        (tmp_path / folder / f"{kid}.key").rename(tmp_path / f"{kid}.key")
    assert gatectl.main(["holder", "new", "--out", str(tmp_path / "phone")]) == 0
    (tmp_path / "config.toml").write_text(
        '[gate]\nsite = "binhai-0001"\nid = "north-1"\n'
        '[trust]\nkeys_dir = "issuers"\nops_keys_dir = "ops"\n'
        '[state]\ndir = "state"\n'
    )
    _install_list(tmp_path, 1, 0)  # the provisioning list: without one, scans are refused
    return tmp_path


def _install_list(gate: Path, version: int, age_h: float) -> None:
    """A signed, empty full list issued ``age_h`` before AT, installed as an installer does."""
    from agent.core.timefmt import parse_instant
    from agent.protocol.keys import load_keyring, load_signing_key
    from agent.protocol.revocation import (
        RevocationList,
        parse_revocation_list,
        sign_revocation_list,
    )
    from agent.store.revocations import RevocationStore

    at = parse_instant(AT)
    signed = sign_revocation_list(RevocationList("full", version, None, int(at - age_h * 3600),
                                                 ()), load_signing_key(gate / "ops1.key"), "ops1")
    keyring = load_keyring(gate / "issuers", gate / "ops")
    with RevocationStore(gate / "state") as store:
        store.apply(parse_revocation_list(signed, keyring, at))


def _issue(gate: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    capsys.readouterr()
    code = gatectl.main(
        ["credential", "issue", "--key", str(gate / "iss1.key"), "--sub", "C42",
         "--scope", "binhai-0001", "--not-before", "2027-03-01T00:00:00Z", *extra]
    )
    assert code == 0
    return capsys.readouterr().out.strip()


def _present(gate: Path, capsys: pytest.CaptureFixture[str], cred: str, *extra: str) -> str:
    capsys.readouterr()
    code = gatectl.main(
        ["present", "--credential", cred, "--holder-key", str(gate / "phone" / "holder.key"),
         "--at", AT, *extra]
    )
    assert code == 0
    return capsys.readouterr().out.strip()


def _verify(gate: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list]:
    capsys.readouterr()
    code = gate_agent.main(["verify", "--config", str(gate / "config.toml"), "--at", AT, *args])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return code, lines


def test_keys_new_writes_private_0600_and_refuses_to_overwrite(tmp_path: Path) -> None:
    result = _run("gatectl", "keys", "new", "--kid", "centre-2027", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "centre-2027.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "centre-2027.pub").is_file()
    again = _run("gatectl", "keys", "new", "--kid", "centre-2027", "--out", str(tmp_path))
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1 and "already exists" in again.stderr


def test_live_code_granted_once_then_replayed_and_at_leaves_the_state_alone(
    gate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cred = _issue(gate, capsys, "--holder-pub", str(gate / "phone" / "holder.pub"))
    code = _present(gate, capsys, cred)
    assert code.startswith("QP1:")
    state = gate / "state"
    before = {p.name: p.read_bytes() for p in state.iterdir() if p.is_file()}
    both = _run("gate-agent", "verify", "--config", str(gate / "config.toml"), "--at", AT, "-",
                stdin=f"{code}\n{code}\n")
    assert both.returncode == 1, both.stderr
    first, second = (json.loads(line) for line in both.stdout.splitlines())
    assert first["granted"] is True and first["reason"] == "ok"
    assert first["sub"] == "C42" and len(first["cti"]) == 16
    assert second["reason"] == "replayed"  # remembered for the run
    # --at looks at another time: it never writes (or prunes) the gate's state.
    assert {p.name: p.read_bytes() for p in state.iterdir() if p.is_file()} == before
    decision = first
    # The static credential of a bound courier is not enough on its own.
    assert _verify(gate, capsys, cred) == (
        1, [{"granted": False, "reason": "holder_required", "sub": "C42",
             "cti": decision["cti"]}],
    )


def test_stdin_gives_one_line_per_input(
    gate: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cred = _issue(gate, capsys, "--holder-pub", str(gate / "phone" / "holder.pub"))
    live = _present(gate, capsys, cred)
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{live}\nnot a code\nQM9:XYZ\n"))
    code, lines = _verify(gate, capsys, "-")
    assert code == 1
    assert [line["reason"] for line in lines] == ["ok", "malformed", "unsupported_version"]


def test_png_rendered_by_gatectl_verifies_through_the_image_path(
    gate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cred = _issue(gate, capsys, "--holder-pub", str(gate / "phone" / "holder.pub"),
                  "--qr", str(gate / "cred.png"))
    assert (gate / "cred.png").stat().st_size > 0
    live = _present(gate, capsys, cred, "--qr", str(gate / "live.png"))
    code, lines = _verify(gate, capsys, "--image", str(gate / "live.png"),
                          "--image", str(gate / "live.png"))
    assert code == 1, lines
    assert lines[0]["granted"] and lines[0]["sub"] == "C42"
    # The image held exactly the printed text: read again in the same run, a replay.
    assert lines[1]["reason"] == "replayed"
    assert _verify(gate, capsys, live)[1][0]["reason"] == "ok"  # --at remembered nothing


def test_image_without_a_code_is_no_code(gate: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cv2

    blank = gate / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320), 255, np.uint8))
    assert _verify(gate, capsys, "--image", str(blank)) == (
        1, [{"granted": False, "reason": "no_code", "sub": None, "cti": None}]
    )


def test_static_credential_at_a_gate_that_accepts_static(
    gate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = gate / "config.toml"
    config.write_text(config.read_text() + "[policy]\naccept_static = true\n")
    cred = _issue(gate, capsys, "--ttl", "9h")
    assert _verify(gate, capsys, cred)[0] == 0
    late = "2027-03-01T09:00:01Z"
    capsys.readouterr()
    assert gate_agent.main(["verify", "--config", str(config), "--at", late, cred]) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "expired"


def test_revocation_list_from_gatectl_revokes_at_the_gate(
    gate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.protocol.keys import load_keyring
    from agent.protocol.revocation import parse_revocation_list
    from agent.store.revocations import RevocationStore

    cred = _issue(gate, capsys, "--holder-pub", str(gate / "phone" / "holder.pub"))
    entries = gate / "entries.txt"
    entries.write_text("# revoked today\nsub:C7\nsub:C42@2027-03-01T00:00:01Z\ncti:ABCDEF0102\n")
    capsys.readouterr()
    assert gatectl.main(["revocations", "full", "--key", str(gate / "ops1.key"), "--version",
                         "5", "--from", str(entries), "--out", str(gate / "rev5.cbor")]) == 0
    assert "full list version 5, 3 added" in capsys.readouterr().out
    keyring = load_keyring(gate / "issuers", gate / "ops")
    lst = parse_revocation_list((gate / "rev5.cbor").read_bytes(), keyring, 1_800_000_000)
    assert {(e.kind, e.value) for e in lst.add} == {
        ("sub", "C7"), ("sub", "C42"), ("cti", "abcdef0102")
    }
    store = RevocationStore(gate / "state")
    try:
        store.apply(lst)
    finally:
        store.close()
    code, lines = _verify(gate, capsys, _present(gate, capsys, cred))
    assert (code, lines[0]["reason"]) == (1, "revoked")

    assert gatectl.main(["revocations", "delta", "--key", str(gate / "ops1.key"), "--base", "5",
                         "--version", "6", "--remove-sub", "C42@2027-03-01T00:00:01Z",
                         "--out", str(gate / "rev6.cbor")]) == 0
    delta = parse_revocation_list((gate / "rev6.cbor").read_bytes(), keyring, 1_800_000_000)
    assert (delta.kind, delta.base, delta.version, len(delta.remove)) == ("delta", 5, 6, 1)


@pytest.mark.parametrize(
    ("tool", "args", "words"),
    [
        ("gatectl", ["credential", "issue", "--key", "KEY", "--sub", "C1", "--scope", "a/*"],
         "SITE/GATE"),
        ("gatectl", ["credential", "issue", "--key", "KEY", "--sub", "C1", "--scope", "a",
                     "--ttl", "forever"], "duration"),
        ("gatectl", ["credential", "issue", "--key", "KEY", "--sub", "C1", "--scope", "a",
                     "--ttl", "12"], "use a number with s, m, h or d"),  # not 12 seconds
        ("gatectl", ["credential", "issue", "--key", "missing.key", "--sub", "C1", "--scope",
                     "a"], "does not exist"),
        ("gatectl", ["present", "--credential", "QM1:0EC", "--holder-key", "KEY"],
         "not a credential"),
        ("gatectl", ["revocations", "full", "--key", "KEY", "--version", "1", "--cti", "xyz",
                     "--out", "OUT"], "hex credential id"),
        ("gatectl", ["revocations", "full", "--key", "KEY", "--version", "1", "--sub", "C" * 65,
                     "--out", "OUT"], "courier id of 1-64 characters"),
        ("gatectl", ["revocations", "delta", "--key", "KEY", "--base", "3", "--version", "2",
                     "--out", "OUT"], "must be below"),
        ("gate-agent", ["verify", "--config", "CONFIG"], "exactly one of"),
        ("gate-agent", ["verify", "--config", "CONFIG", "--at", "noon", "x"], "ISO 8601"),
        ("gate-agent", ["verify", "--config", "NOPE", "x"], "does not exist"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    gate: Path, capsys: pytest.CaptureFixture[str], tool: str, args: list[str], words: str
) -> None:
    subst = {"KEY": str(gate / "iss1.key"), "CONFIG": str(gate / "config.toml"),
             "NOPE": str(gate / "nope.toml"), "OUT": str(gate / "out.cbor")}
    argv = [subst.get(a, a) for a in args]
    main = gatectl.main if tool == "gatectl" else gate_agent.main
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2, err
    assert words in err
    assert "Traceback" not in err


def test_verify_with_a_broken_trusted_key_is_a_config_error(gate: Path) -> None:
    (gate / "issuers" / "junk.pub").write_text("junk")
    result = _run("gate-agent", "verify", "--config", str(gate / "config.toml"), "QM1:0EC")
    assert result.returncode == 2
    assert "junk.pub: not a PEM public key" in result.stderr
    assert result.stderr.count("\n") == 1


def test_verify_while_the_daemon_holds_the_state_writes_nothing_and_says_so(
    gate: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from agent.core.timefmt import parse_instant
    from agent.store.revocations import RevocationStore

    # Without --at verify judges at the real time: issue and present the code then.
    now = parse_instant(AT)
    monkeypatch.setattr(time, "time", lambda: now)
    cred = _issue(gate, capsys, "--holder-pub", str(gate / "phone" / "holder.pub"))
    first, second = _present(gate, capsys, cred), _present(gate, capsys, cred)
    config = str(gate / "config.toml")
    capsys.readouterr()
    assert gate_agent.main(["verify", "--config", config, first]) == 0  # no daemon: remembered
    db = gate / "state" / "outbox.db"
    on_disk = db.read_bytes()
    daemon = RevocationStore(gate / "state")  # what the running daemon holds: the lock
    try:
        monkeypatch.setattr(sys, "stdin", io.StringIO(f"{second}\n{second}\n{first}\n"))
        capsys.readouterr()
        code = gate_agent.main(["verify", "--config", config, "-"])
        out, err = capsys.readouterr()
        reasons = [json.loads(line)["reason"] for line in out.splitlines()]
        assert (code, reasons) == (1, ["ok", "replayed", "replayed"])
        assert err.count("\n") == 1
        assert "daemon is using" in err and "replay cache is checked read-only" in err
        assert db.read_bytes() == on_disk  # nothing written behind the daemon
    finally:
        daemon.close()
    # Daemon gone: verify takes the lock again and writes what it grants.
    capsys.readouterr()
    assert gate_agent.main(["verify", "--config", config, second]) == 0
    assert gate_agent.main(["verify", "--config", config, second]) == 1


def test_verify_applies_the_stale_list_rule_as_the_daemon_does(
    gate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.core.timefmt import parse_instant
    from agent.protocol.keys import load_keyring, load_signing_key
    from agent.protocol.revocation import (
        RevocationList,
        parse_revocation_list,
        sign_revocation_list,
    )
    from agent.store.revocations import RevocationStore

    config = gate / "config.toml"
    config.write_text(config.read_text() + '[policy]\non_stale_revocations = "deny"\n')
    cred = _issue(gate, capsys, "--holder-pub", str(gate / "phone" / "holder.pub"))
    keyring = load_keyring(gate / "issuers", gate / "ops")
    ops = load_signing_key(gate / "ops1.key")
    at = parse_instant(AT)
    for version, age_h, reason in ((2, 73, "revocations_stale"), (3, 1, "ok")):
        signed = sign_revocation_list(
            RevocationList("full", version, None, int(at - age_h * 3600), ()), ops, "ops1"
        )
        with RevocationStore(gate / "state") as store:
            store.apply(parse_revocation_list(signed, keyring, at))
        decision = _verify(gate, capsys, _present(gate, capsys, cred))[1][0]
        assert (decision["reason"], decision["sub"]) == (reason, "C42")
