"""Image files for ``verify --image`` and ``decode --image``: sizes checked before decoding.

A small compressed file can claim a huge picture (a 0.4 MB PNG of 20,000 x 20,000 pixels
decodes to 400 MB and takes seconds), so the file's size is checked before it is read and
its pixel dimensions are read from the format's own header before OpenCV decodes
anything. Formats whose header is not understood here are refused rather than decoded.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from agent.core.errors import UsageError

MAX_IMAGE_BYTES = 16 * 1024 * 1024
MAX_SIDE = 8192  # pixels; a 12 MP phone photo is 4032 x 3024
MAX_PIXELS = 40_000_000
FORMATS = "PNG, JPEG, WebP, BMP or GIF"
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def image_size(head: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) from the first bytes of a file, or None if not understood."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return "PNG", width, height
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return "GIF", width, height
    if head.startswith(b"BM") and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return "BMP", abs(width), abs(height)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_size(head)
    return None


def _jpeg_size(head: bytes) -> tuple[str, int, int] | None:
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(head):
                return None
            height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return "JPEG", width, height
        if length < 2:
            return None
        pos += 2 + length
    return None


def _webp_size(head: bytes) -> tuple[str, int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return "WebP", width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        (bits,) = struct.unpack("<I", head[21:25])
        return "WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return "WebP", width, height
    return None


def read_gray(
    path: Path, *, max_bytes: int = MAX_IMAGE_BYTES, max_side: int = MAX_SIDE,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """The image as 8-bit grayscale; UsageError saying why when it is refused."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise UsageError(f"{path}: image file is {size} bytes, over the "
                                 f"{max_bytes // (1024 * 1024)} MB limit: use a smaller image")
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
    found = image_size(data[:65536])
    if found is None:
        raise UsageError(f"{path}: not an image this gate reads ({FORMATS} with a readable header)")
    kind, width, height = found
    if not (0 < width <= max_side and 0 < height <= max_side and width * height <= max_pixels):
        raise UsageError(f"{path}: {kind} of {width} x {height} pixels is over the limit of "
                         f"{max_side} pixels a side and {max_pixels // 1_000_000} megapixels: "
                         "use a smaller image")
    import cv2

    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise UsageError(f"{path}: the {kind} image does not decode (damaged or truncated?)")
    return np.asarray(gray)
