"""``gate-agent web token`` and the [web] config section."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.core.config import config_from_mapping, load_config
from agent.core.errors import ConfigError
from agent.runtime.web.auth import OneTimeToken
from tests.daemon_support import gate_files

GATE_AGENT = str(Path(sys.executable).parent / "gate-agent")


def _token(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GATE_AGENT, "web", "token", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60)


def test_web_token_prints_a_link_that_logs_in_once_and_a_qr_code(tmp_path: Path) -> None:
    _, config = gate_files(tmp_path, web={"enabled": True, "bind": "127.0.0.1:8099"})
    done = _token(config)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    token = lines[1].split(": ", 1)[1].strip()
    assert lines[0] == "installer page: http://127.0.0.1:8099/"
    assert lines[2].split(None, 2)[2] == f"http://127.0.0.1:8099/login#token={token}"
    assert any("█" in line or "▄" in line for line in lines[3:])  # the QR code
    path = tmp_path / "state" / "web-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = _token(config, "--no-qr")
    second = again.stdout.splitlines()[1].split(": ", 1)[1].strip()
    assert second != token and len(again.stdout.splitlines()) == 3
    assert not OneTimeToken(path).redeem(token)  # replaced by the fresh one
    assert OneTimeToken(path).redeem(second)


def test_web_token_says_when_the_page_is_off(tmp_path: Path) -> None:
    _, config = gate_files(tmp_path, web={"token_file": str(tmp_path / "elsewhere" / "tok")})
    done = _token(config, "--no-qr")
    assert done.returncode == 0
    assert "enabled = false" in done.stderr and done.stderr.count("\n") == 1
    assert (tmp_path / "elsewhere" / "tok").is_file()
    assert "http://" in done.stdout and ":8080/" in done.stdout


def test_web_section_defaults_and_bad_values(tmp_path: Path) -> None:
    _, config = gate_files(tmp_path)
    loaded = load_config(config)
    assert loaded.web.enabled is False and loaded.web.bind == "0.0.0.0:8080"
    assert loaded.web_token_path() == tmp_path / "state" / "web-token"
    base = {"gate": {"site": "s", "id": "g"},
            "trust": {"keys_dir": str(tmp_path), "ops_keys_dir": str(tmp_path)}}
    with pytest.raises(ConfigError) as err:
        config_from_mapping({**base, "web": {"bind": "8080", "enable": True}}, tmp_path)
    assert "web.bind: must be \"address:port\"" in str(err.value)
    assert "web.enable: unknown key" in str(err.value)
    relative = config_from_mapping({**base, "web": {"token_file": "tok"}}, tmp_path)
    assert relative.web_token_path() == tmp_path / "tok"
