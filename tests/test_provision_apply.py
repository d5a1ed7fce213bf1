"""gate-agent provision apply on a --root: files, owners, modes, secrets gone from the boot
folder, idempotent; a changed byte anywhere refuses the bundle and installs nothing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent.cli import gate_agent
from agent.core.config import load_config
from tests.provision_support import Centre, make_centre, provision

UID = GID = 4242
IS_ROOT = os.geteuid() == 0


@pytest.fixture
def centre(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Centre:
    return make_centre(tmp_path / "centre", capsys)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A staged image root whose own passwd has the service user (as sysusers made it)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        f"gate-agent:x:{UID}:{GID}:gate-agent daemon:/var/lib/gate-agent:/usr/sbin/nologin\n")
    return root


@pytest.fixture
def bundle(centre: Centre, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A bundle as copied to the boot partition (the folder named gate-agent)."""
    made = provision(centre, "binhai-0001/north-1", tmp_path / "out")
    boot = tmp_path / "boot" / "gate-agent"
    boot.parent.mkdir()
    made.rename(boot)
    capsys.readouterr()
    return boot


def _apply(bundle: Path, root: Path, *extra: str) -> int:
    return gate_agent.main(["provision", "apply", str(bundle), "--root", str(root), *extra])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_apply_installs_with_owners_and_modes_and_deletes_the_secrets(
        bundle: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = (bundle / "tls" / "gate.key").read_bytes()
    assert _apply(bundle, root) == 0
    out = capsys.readouterr().out
    assert "installed binhai-0001/north-1" in out and "deleted tls/gate.key" in out
    etc = root / "etc" / "gate-agent"
    config = load_config(etc / "config.toml")
    assert (config.gate.site, config.gate.id) == ("binhai-0001", "north-1")
    assert config.mqtt is not None and config.mqtt.key_file == etc / "tls" / "gate.key"
    assert (etc / "tls" / "gate.key").read_bytes() == key
    assert (etc / "keys" / "issuers" / "issuer-1.pub").is_file()
    assert (etc / "keys" / "ops" / "ops-1.pub").is_file()
    assert (etc / "provisioned.json").is_file()
    for path in (etc, etc / "tls", etc / "keys" / "issuers"):
        assert _mode(path) == 0o750
    assert _mode(etc / "config.toml") == 0o640
    assert _mode(etc / "tls" / "gate.key") == 0o600
    assert _mode(etc / "installer-token") == 0o600
    state = root / "var" / "lib" / "gate-agent"
    assert state.is_dir()
    if IS_ROOT:  # owners are set only by root (the first-boot unit runs as root)
        assert (etc / "tls" / "gate.key").stat().st_uid == UID
        assert (etc / "config.toml").stat().st_uid == 0
        assert (etc / "config.toml").stat().st_gid == GID
        assert etc.stat().st_gid == GID and state.stat().st_uid == UID
    assert not (bundle / "tls" / "gate.key").exists()
    assert not (bundle / "installer-token").exists()
    assert not (bundle / "SHA256SUMS").exists() and (bundle / "SHA256SUMS.applied").exists()


def test_applying_again_changes_nothing(
        bundle: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _apply(bundle, root) == 0
    etc = root / "etc" / "gate-agent"
    before = _tree(etc)
    capsys.readouterr()
    assert _apply(bundle, root) == 0
    assert "already installed" in capsys.readouterr().out
    assert _tree(etc) == before


@pytest.mark.parametrize("name", ["config.toml", "bundle.json", "SHA256SUMS", "tls/gate.pem",
                                  "tls/gate.key", "tls/ca.pem", "tls/client-ca.pem",
                                  "keys/issuers/issuer-1.pub", "keys/ops/ops-1.pub",
                                  "installer-token"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_one_changed_byte_refuses_the_bundle_and_installs_nothing(
        bundle: Path, root: Path, capsys: pytest.CaptureFixture[str], name: str,
        where: str) -> None:
    path = bundle / name
    data = bytearray(path.read_bytes())
    index = {"first": 0, "middle": len(data) // 2, "last": len(data) - 1}[where]
    data[index] ^= 0x01
    path.write_bytes(bytes(data))
    before = _tree(bundle)
    assert _apply(bundle, root) == 1
    err = capsys.readouterr().err
    assert err.startswith("gate-agent: ") and err.count("\n") == 1, err
    assert "copy" in err or "damaged" in err or "not" in err, err
    assert not (root / "etc" / "gate-agent").exists()
    assert _tree(bundle) == before  # secrets stay where they were: nothing happened


def test_an_added_file_refuses_the_bundle(
        bundle: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (bundle / "keys" / "issuers" / "rogue.pub").write_bytes(
        (bundle / "keys" / "issuers" / "issuer-1.pub").read_bytes())
    assert _apply(bundle, root) == 1
    assert "rogue.pub is not in SHA256SUMS" in capsys.readouterr().err
    assert not (root / "etc" / "gate-agent").exists()


def test_a_bundle_for_another_gate_is_refused_unless_forced(
        bundle: Path, root: Path, centre: Centre, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert _apply(bundle, root) == 0
    other = provision(centre, "binhai-0001/south-2", tmp_path / "out2")
    capsys.readouterr()
    assert _apply(other, root) == 1
    err = capsys.readouterr().err
    assert "provisioned as binhai-0001/north-1" in err and "--force" in err
    assert load_config(root / "etc/gate-agent/config.toml").gate.id == "north-1"
    assert (other / "tls" / "gate.key").exists()
    assert _apply(other, root, "--force") == 0
    assert load_config(root / "etc/gate-agent/config.toml").gate.id == "south-2"


def test_a_new_bundle_for_the_same_gate_replaces_its_certificate(
        bundle: Path, root: Path, centre: Centre, tmp_path: Path) -> None:
    assert _apply(bundle, root) == 0
    again = provision(centre, "binhai-0001/north-1", tmp_path / "out2")
    assert _apply(again, root) == 0
    installed = (root / "etc/gate-agent/tls/gate.pem").read_bytes()
    assert installed == (again / "tls" / "gate.pem").read_bytes()


@pytest.mark.skipif(not IS_ROOT, reason="the service user is looked up only when root")
def test_a_root_without_the_service_user_is_a_usage_error(
        bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "bare"
    (bare / "etc").mkdir(parents=True)
    (bare / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    assert _apply(bundle, bare) == 2
    assert "user gate-agent does not exist" in capsys.readouterr().err
    assert not (bare / "etc" / "gate-agent").exists()
    assert (bundle / "tls" / "gate.key").exists()


def test_a_folder_that_is_not_a_bundle_is_refused(
        tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _apply(tmp_path / "missing", root) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert _apply(tmp_path / "empty", root) == 1
    assert "no SHA256SUMS" in capsys.readouterr().err


def test_json_output_says_what_was_installed_and_removed(
        bundle: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert _apply(bundle, root, "--json") == 0
    line = json.loads(capsys.readouterr().out)
    assert line["site"] == "binhai-0001" and line["gate"] == "north-1"
    assert line["already"] is False and "tls/gate.key" in line["installed"]
    assert sorted(line["removed"]) == ["installer-token", "tls/gate.key"]
    assert _apply(bundle, root, "--json") == 0
    assert json.loads(capsys.readouterr().out)["already"] is True
