"""`gate-agent decode` and `gate-agent relay-safe` as an installer runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from agent.cli.gate_agent import main
from hw import render

ROOT = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, door: str = "") -> Path:
    for d in ("keys/issuers", "keys/ops"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text(
        '[gate]\nsite = "s1"\nid = "g1"\n'
        '[trust]\nkeys_dir = "keys/issuers"\nops_keys_dir = "keys/ops"\n'
        f'[state]\ndir = "state"\n[door]\n{door}\n'
        '[camera]\ndecoder = "zxing"\n'
    )
    return path


def _image(tmp_path: Path, name: str, text: str | None) -> Path:
    scene = render.scene(640, 480)
    image = scene if text is None else render.place(scene, render.qr_image(text, 6))
    path = tmp_path / name
    cv2.imwrite(str(path), image)
    return path


def test_decode_json_one_line_per_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _image(tmp_path, "a.png", "QM1:HELLO")
    b = _image(tmp_path, "b.png", None)
    assert main(["decode", "--json", "--image", str(a), str(b)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["source"] for line in lines] == [str(a), str(b)]
    assert lines[0]["texts"] == ["QM1:HELLO"]
    assert lines[0]["decoder"] == "zxing"
    assert lines[1] == {"source": str(b), "texts": [], "decoder": None, "ms": lines[1]["ms"]}
    assert isinstance(lines[1]["ms"], float)


def test_decode_nothing_read_exits_1_with_readable_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    b = _image(tmp_path, "b.png", None)
    assert main(["decode", "--image", str(b)]) == 1
    assert "no code" in capsys.readouterr().out


def test_decode_uses_config_decoder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _image(tmp_path, "a.png", "QM1:CFG")
    cfg = _config(tmp_path)
    assert main(["decode", "--config", str(cfg), "--json", "--image", str(a)]) == 0
    assert json.loads(capsys.readouterr().out)["decoder"] == "zxing"
    assert main(["decode", "--decoder", "pyzbar", "--json", "--image", str(a)]) == 0
    assert json.loads(capsys.readouterr().out)["decoder"] == "pyzbar"


def test_decode_missing_file_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["decode", "--image", str(tmp_path / "missing.png")])
    assert exc.value.code == 2


def test_decode_unreadable_image_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["decode", "--image", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not an image" in err and len(err.strip().splitlines()) == 1


def test_decode_camera_missing_device_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path)
    cfg.write_text(cfg.read_text().replace("[camera]\n", f'[camera]\ndevice = "{tmp_path}/v9"\n'))
    assert main(["decode", "--camera", "--frames", "1", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "cannot be opened" in err and len(err.strip().splitlines()) == 1


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli.gate_agent", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_relay_safe_on_mock_pins(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "relay_pin = 26\nrelay_active_high = false")
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    done = _run(["relay-safe", "--config", str(cfg)], env)
    assert done.returncode == 0, done.stderr
    assert "GPIO26 driven high (locked)" in done.stdout


def test_relay_safe_without_gpio_exits_1_with_clear_message(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"}
    done = _run(["relay-safe", "--config", str(cfg)], env)
    if done.returncode == 0:
        pytest.skip("this machine has real GPIO")
    assert done.returncode == 1
    assert "no GPIO is available" in done.stderr
    assert "GPIOZERO_PIN_FACTORY=mock" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_relay_safe_bad_config_exits_2(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "relay_pin = 99")
    done = _run(
        ["relay-safe", "--config", str(cfg)], {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    )
    assert done.returncode == 2
    assert "door.relay_pin" in done.stderr
