"""Config loading: the example ships valid, and every mistake is reported with its key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.core.config import config_from_mapping, load_config, resolve_config_path
from agent.core.errors import ConfigError
from tests.conftest import ROOT


def _minimal(tmp_path: Path) -> dict[str, dict[str, object]]:
    (tmp_path / "issuers").mkdir()
    (tmp_path / "ops").mkdir()
    return {
        "gate": {"site": "binhai-0001", "id": "north-1"},
        "trust": {"keys_dir": "issuers", "ops_keys_dir": "ops"},
    }


def test_example_config_is_valid_as_shipped(tmp_path: Path) -> None:
    # Installed as /etc/gate-agent/config.toml, its key folders sit beside it.
    config_file = tmp_path / "config.toml"
    config_file.write_text((ROOT / "config.example.toml").read_text())
    (tmp_path / "keys" / "issuers").mkdir(parents=True)
    (tmp_path / "keys" / "ops").mkdir(parents=True)
    config = load_config(config_file)
    assert config.trust.keys_dir == tmp_path / "keys" / "issuers"
    assert config.gate.site and config.gate.id


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = config_from_mapping(_minimal(tmp_path), base_dir=tmp_path)
    assert config.trust.keys_dir == tmp_path / "issuers"
    assert config.gate.site == "binhai-0001"
    assert config.policy.accept_static is False
    assert config.mqtt is None


def test_every_problem_is_listed_with_its_dotted_key(tmp_path: Path) -> None:
    raw = _minimal(tmp_path)
    raw["gate"] = {"site": "a/b"}
    raw["trust"]["keys_dir"] = "/x/does/not/exist"
    raw["door"] = {"relay_pin": "seventeen", "unlock_sec": 3}
    raw["policy"] = {"presentation_window_s": -1}
    with pytest.raises(ConfigError) as err:
        config_from_mapping(raw, base_dir=tmp_path)
    problems = "\n".join(err.value.problems)
    assert "gate.id: missing" in problems
    assert "gate.site: must not contain /" in problems
    assert "trust.keys_dir: /x/does/not/exist does not exist" in problems
    assert "door.relay_pin: expected a whole number" in problems
    assert "door.unlock_sec: unknown key" in problems
    assert "policy.presentation_window_s: must be a finite number above 0" in problems


def test_unknown_section_and_pin_conflict_are_errors(tmp_path: Path) -> None:
    raw = _minimal(tmp_path)
    raw["camrea"] = {}
    with pytest.raises(ConfigError, match="camrea: unknown section"):
        config_from_mapping(raw, base_dir=tmp_path)
    raw = _minimal_again(tmp_path)
    raw["door"] = {"relay_pin": 17, "exit_pin": 17}
    with pytest.raises(
        ConfigError, match="door.exit_pin: pin 17 is already used by door.relay_pin"
    ):
        config_from_mapping(raw, base_dir=tmp_path)


def _minimal_again(tmp_path: Path) -> dict[str, dict[str, object]]:
    return {
        "gate": {"site": "s", "id": "g"},
        "trust": {"keys_dir": str(tmp_path / "issuers"), "ops_keys_dir": str(tmp_path / "ops")},
    }


def test_missing_or_broken_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist: copy config.example.toml"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[gate\nsite=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATE_AGENT_CONFIG", "/env/config.toml")
    assert resolve_config_path("/cli.toml") == Path("/cli.toml")
    assert resolve_config_path(None) == Path("/env/config.toml")
    monkeypatch.delenv("GATE_AGENT_CONFIG")
    assert resolve_config_path(None) == Path("/etc/gate-agent/config.toml")
    assert os.environ.get("GATE_AGENT_CONFIG") is None


def test_an_infinite_unlock_time_is_refused(tmp_path: Path) -> None:
    # TOML has inf and nan: neither may keep the relay released or disable a bound.
    _minimal(tmp_path)
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        '[gate]\nsite = "s"\nid = "g"\n[trust]\nkeys_dir = "issuers"\nops_keys_dir = "ops"\n'
        "[door]\nunlock_s = inf\nbounce_s = nan\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(config_file)
    problems = "\n".join(err.value.problems)
    assert "door.unlock_s: must be a finite number above 0, got inf" in problems
    assert "door.bounce_s: must be a finite number 0 or more, got nan" in problems
