"""Images: sizes checked from the header before decoding; one code per scan."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from agent.cli import gate_agent, gatectl
from hw.imagefile import image_size
from hw.render import qr_image
from tests.test_cli_credential import make_gate

BIN = Path(sys.executable).parent
AT = "2027-03-01T08:00:00Z"


def png_bomb(path: Path, side: int = 20_000) -> Path:
    """A real, valid grayscale PNG of side x side pixels that compresses to well under 1 MB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    packer = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte + pixels
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp"])
def test_header_sizes_match_what_opencv_writes(tmp_path: Path, ext: str) -> None:
    import cv2

    ok, data = cv2.imencode(ext, np.zeros((123, 457), np.uint8))
    assert ok
    found = image_size(data.tobytes())
    assert found is not None and found[1:] == (457, 123)


@pytest.mark.parametrize("command", ["verify", "decode"])
def test_image_bomb_is_refused_from_its_header(tmp_path: Path, bomb: Path, command: str) -> None:
    assert bomb.stat().st_size < 1_000_000
    config = tmp_path / "config.toml"
    keys = tmp_path / "keys"
    keys.mkdir()
    config.write_text(f'[gate]\nsite = "s"\nid = "g"\n[trust]\nkeys_dir = "{keys}"\n'
                      f'ops_keys_dir = "{keys}"\n[state]\ndir = "{tmp_path / "state"}"\n')
    args = ["--config", str(config), "--image", str(bomb)]
    result = subprocess.run([str(BIN / "gate-agent"), command, *args], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "20000 x 20000 pixels is over the limit" in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    return make_gate(tmp_path)


def _out(capsys: pytest.CaptureFixture[str], argv: list[str], tool: object) -> tuple[int, str]:
    capsys.readouterr()
    code = tool.main(argv)  # type: ignore[attr-defined]
    return code, capsys.readouterr().out.strip()


def test_two_live_codes_in_one_image_decide_one_and_leave_the_other_unused(
    gate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2

    lives = []
    for sub in ("C1", "C2"):
        code, cred = _out(capsys, [
            "credential", "issue", "--key", str(gate / "iss1.key"), "--sub", sub,
            "--scope", "binhai-0001", "--not-before", "2027-03-01T00:00:00Z",
            "--holder-pub", str(gate / "phone" / "holder.pub")], gatectl)
        assert code == 0
        code, live = _out(capsys, ["present", "--credential", cred, "--holder-key",
                                   str(gate / "phone" / "holder.key"), "--at", AT], gatectl)
        assert code == 0
        lives.append(live)
    left, right = qr_image(lives[0], module_px=4), qr_image(lives[1], module_px=4)
    h = max(left.shape[0], right.shape[0])
    canvas = np.full((h + 40, left.shape[1] + right.shape[1] + 60), 255, np.uint8)
    canvas[20:20 + left.shape[0], 20:20 + left.shape[1]] = left
    canvas[20:20 + right.shape[0], 40 + left.shape[1]:40 + left.shape[1] + right.shape[1]] = right
    both = gate / "both.png"
    cv2.imwrite(str(both), canvas)

    verify = ["verify", "--config", str(gate / "config.toml"), "--at", AT]
    code, out = _out(capsys, [*verify, "--image", str(both)], gate_agent)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["reason"] for line in lines] == ["ok", "extra_code"], lines
    assert code == 0  # the decided code was granted; the ignored one is no decision
    assert lines[1] == {"granted": False, "reason": "extra_code", "sub": None, "cti": None}
    # The ignored code's replay key was not used. In one run (``--at`` remembers for the
    # run only): the two-code image, then each code alone: the ignored one is granted, the
    # decided one is a replay.
    alone = []
    for n, live in enumerate(lives):
        alone.append(gate / f"live-{n}.png")
        cv2.imwrite(str(alone[-1]), qr_image(live, module_px=4))
    code, out = _out(capsys, [*verify, "--image", str(both), "--image", str(alone[0]),
                              "--image", str(alone[1])], gate_agent)
    lines = [json.loads(line) for line in out.splitlines()]
    decided = lines[0]["sub"]
    assert [(line["sub"], line["reason"]) for line in lines[2:]] == [
        ("C1", "replayed" if decided == "C1" else "ok"),
        ("C2", "replayed" if decided == "C2" else "ok"),
    ]
