#!/usr/bin/env python3
"""Hardware-in-the-loop check on a real Pi: the camera reads a printed test card.

    python scripts/hil_camera_card.py --make-card card.png      # print it (A6 or larger)
    sudo -u gate-agent /opt/gate-agent/venv/bin/python scripts/hil_camera_card.py \\
        --config /etc/gate-agent/config.toml [--seconds 20] [--reads 5]

The card holds a version-10 QR (57x57 modules, the size of a courier's pass) whose text
starts ``GATE-AGENT-TEST-CARD``; it is not a pass and the gate denies it as
``malformed``. The check opens ``[camera]`` through the daemon's own source
(``hw.camera.CameraSource``: capture, change gate, zxing-cpp/pyzbar) and passes when it
reads the card ``--reads`` times (move the card away and back between reads: the same
code is reported once per ``scanner.dedupe_s``) within ``--seconds``. It prints the
frames seen and decode times, and exits 0 on pass, 1 otherwise. ``--image PHOTO``
decodes one photo instead (e.g. taken with ``rpicam-still``), to tell optics from code.
Not part of the test run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout too

# One card for this script and `gate-agent check` (which names it when it reads it).
from agent.runtime.check_scanner import TEST_CARD_PREFIX as CARD_PREFIX
from agent.runtime.check_scanner import TEST_CARD_TEXT as CARD_TEXT


def make_card(path: Path) -> int:
    import segno

    segno.make(CARD_TEXT, error="m", micro=False).save(str(path), scale=12, border=4)
    print(f"wrote {path}: print it without scaling to fit, hold it where couriers hold phones")
    return 0


def check_image(path: Path, decoder_kind: str) -> int:
    import cv2

    from hw.decoders import make_decoder

    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        print(f"FAIL  {path} is not an image OpenCV can read")
        return 1
    result = make_decoder(decoder_kind).decode(gray)  # type: ignore[arg-type]
    ok = any(text.startswith(CARD_PREFIX) for text in result.texts)
    print(f"{'PASS' if ok else 'FAIL'}  {path}: {len(result.texts)} code(s), decoder "
          f"{result.decoder}, {result.ms:.1f} ms"
          + ("" if ok else " -> focus, light, or the card too small in the frame "
             "(the code needs 230+ pixels across)"))
    return 0 if ok else 1


def check_camera(config_path: Path, seconds: float, reads: int) -> int:
    from agent.core.config import load_config
    from agent.runtime.hwsettings import camera_settings
    from hw.camera import CameraSource
    from hw.decoders import make_decoder

    config = load_config(config_path)
    seen: list[float] = []

    def on_code(text: str, _method: str) -> None:
        card = text.startswith(CARD_PREFIX)
        if card:
            seen.append(time.monotonic())
        print(f"  read {'the test card' if card else 'another code (not the card)'}", flush=True)

    source = CameraSource(camera_settings(config.camera), config.scanner.dedupe_s,
                          make_decoder(config.camera.decoder))
    print(f"camera {config.camera.device!r} {config.camera.width}x{config.camera.height}: "
          f"show the card {reads} time(s) within {seconds:g} s", flush=True)
    source.start(on_code)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(seen) < reads:
            time.sleep(0.1)
        status = source.status()
    finally:
        source.stop(2.0)
    ok = len(seen) >= reads
    print(f"{'PASS' if ok else 'FAIL'}  {len(seen)}/{reads} card reads; frames "
          f"{status.get('frames')}, decoded {status.get('decoded')}, last decode "
          f"{status.get('last_decode_ms')} ms, last error {status.get('last_error')}")
    if not status.get("frames"):
        print("  -> no frames: camera.device, the cable, the video group (ls /dev/video*)")
    elif not ok:
        print("  -> frames but too few reads: aim and focus with gate-agent decode --camera")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--make-card", type=Path, metavar="PNG", help="write the test card")
    parser.add_argument("--image", type=Path, metavar="PHOTO", help="decode one photo")
    parser.add_argument("--config", type=Path, default=Path("/etc/gate-agent/config.toml"))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--reads", type=int, default=3)
    parser.add_argument("--decoder", default="auto", choices=("auto", "zxing", "pyzbar"))
    args = parser.parse_args()
    if args.make_card:
        return make_card(args.make_card)
    if args.image:
        return check_image(args.image, args.decoder)
    return check_camera(args.config, args.seconds, args.reads)


if __name__ == "__main__":
    sys.exit(main())
