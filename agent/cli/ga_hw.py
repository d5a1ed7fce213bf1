"""``gate-agent decode`` (aim and focus the camera) and ``gate-agent relay-safe`` (lock on stop).

Hardware libraries are imported inside the handlers: ``gate-agent --help`` and the other
commands work on a machine without OpenCV or GPIO.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from agent.cli.common import EXIT_NO, EXIT_OK, add_config_option, config_from_args, existing_file
from agent.core.errors import HardwareError, UsageError
from agent.core.output import emit_json


def register(sub: Any) -> None:
    p = sub.add_parser(
        "decode",
        help="show what the QR decoder reads from images or the camera",
        description="Decode QR codes from image files or live camera frames and print the "
        "text, the decoder that read it and the time it took; installers use it to aim and "
        "focus the camera. Exit 1 when nothing was read in any input.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", nargs="+", type=existing_file, metavar="FILE", help="image files")
    src.add_argument("--camera", action="store_true", help="read frames from [camera]")
    p.add_argument(
        "--frames", type=int, default=30, metavar="N", help="camera frames to decode (default 30)"
    )
    p.add_argument(
        "--decoder",
        choices=["auto", "zxing", "pyzbar"],
        help="decoder to use (default: [camera] decoder of --config, else auto)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    add_config_option(p)
    p.set_defaults(func=cmd_decode)

    r = sub.add_parser(
        "relay-safe",
        help="force the door relay to its locked level and exit",
        description="Drive [door] relay_pin to its locked level and exit 0; systemd runs this "
        "as ExecStopPost so the door locks however the agent ended. GPIOZERO_PIN_FACTORY=mock "
        "runs it on mock pins.",
    )
    add_config_option(r)
    r.set_defaults(func=cmd_relay_safe)


def _print(source: str, texts: list[str], decoder: str | None, ms: float, as_json: bool) -> None:
    if as_json:
        emit_json({"source": source, "texts": texts, "decoder": decoder, "ms": round(ms, 3)})
    elif texts:
        for text in texts:
            print(f"{source}: {decoder} {ms:.1f} ms: {text}", flush=True)
    else:
        print(f"{source}: no code ({ms:.1f} ms)", flush=True)


def cmd_decode(args: argparse.Namespace) -> int:
    if not args.verbose:  # OpenCV's own retry warnings would bury the one-line error
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    from hw.decoders import make_decoder

    config = None
    if args.camera or args.config:
        config = config_from_args(args)
    kind = args.decoder or (config.camera.decoder if config else "auto")
    # every image gets the full fallback; camera frames too (this is a diagnostic)
    decoder = make_decoder(kind)
    read_any = False
    if args.image:
        from hw.imagefile import read_gray

        for path in args.image:
            image = read_gray(path)  # size and pixel count checked before decoding
            result = decoder.decode(image)
            read_any |= bool(result.texts)
            _print(str(path), result.texts, result.decoder, result.ms, args.json)
    else:
        assert config is not None
        read_any = _decode_camera(config, decoder, args.frames, args.json)
    return EXIT_OK if read_any else EXIT_NO


def _decode_camera(config: Any, decoder: Any, frames: int, as_json: bool) -> bool:
    from agent.runtime.hwsettings import camera_settings
    from hw.camera import open_camera_reader

    if frames < 1:
        raise UsageError(f"--frames must be 1 or more, got {frames}")
    reader = open_camera_reader(camera_settings(config.camera))
    reader.open()
    read_any = False
    try:
        for n in range(1, frames + 1):
            frame = reader.read()
            if frame is None:
                raise HardwareError(f"camera {config.camera.device!r} delivered no frame")
            if frame.ndim == 3:
                import cv2

                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            result = decoder.decode(frame)
            read_any |= bool(result.texts)
            source = f"camera:{config.camera.device}#{n}"
            _print(source, result.texts, result.decoder, result.ms, as_json)
    finally:
        reader.close()
    return read_any


def cmd_relay_safe(args: argparse.Namespace) -> int:
    from agent.runtime.hwsettings import relay_settings
    from hw.door import force_locked
    from hw.pins import pin_factory_from_env

    config = config_from_args(args)
    factory = pin_factory_from_env()
    try:
        level = force_locked(relay_settings(config.door), factory)
    finally:
        factory.close()
    print(
        f"relay GPIO{config.door.relay_pin} driven {'high' if level else 'low'} (locked)",
        flush=True,
    )
    return EXIT_OK
