"""QR decoders behind one interface: zxing-cpp first, then a chain of fallback passes.

Choice measured, not assumed (docs/hardware.md, benchmarks/bench_decode.py): zxing-cpp reads
more images, reads dark-mode (inverted) screens in the same pass, and is 5-10x faster than
pyzbar. Each library still reads images the other misses, so ``auto`` runs, when zxing-cpp
finds nothing: zxing-cpp on a 1.5x enlarged frame (small modules), zbar on the frame as it
is (what pyzbar alone reads), zbar on an Otsu-binarised frame. The chain holds each
library's own plain pass, so it reads at least the union of the two. pyzbar is the only
decoder on platforms without a zxing-cpp wheel (32-bit Raspberry Pi OS).

The fallback passes cost 10-30x the first pass on a frame without a code; the caller says
when they may run (``decode(gray, fallback=False)``): on a stream, hw.frames.ChangeGate
allows them only on frames that changed or settled, never on a still, already-tried view.

Both libraries are imported lazily so this module loads on a machine missing either one.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from agent.core.errors import HardwareError

DecoderKind = Literal["auto", "zxing", "pyzbar"]


Point = tuple[int, int]


@dataclass(frozen=True)
class Found:
    """Where one code sits in the frame, for the installer's preview: its four corners
    (pixels, clockwise from top left) and, when the decoder says, its modules per side."""

    text: str
    corners: tuple[Point, Point, Point, Point]
    modules: int | None = None

    def module_px(self) -> float | None:
        """Mean side length over modules per side: under 4 reads unreliably."""
        if not self.modules:
            return None
        c = self.corners
        sides = [((c[i][0] - c[i - 1][0]) ** 2 + (c[i][1] - c[i - 1][1]) ** 2) ** 0.5
                 for i in range(4)]
        return sum(sides) / 4 / self.modules


@dataclass(frozen=True)
class DecodeResult:
    """What one frame held: decoded texts (may be empty), which decoder read them, time
    spent, and where each code was (``found``; only built when something was read)."""

    texts: list[str] = field(default_factory=list)
    decoder: str | None = None
    ms: float = 0.0
    found: tuple[Found, ...] = ()


class Decoder(Protocol):
    name: str

    def decode(self, gray: np.ndarray, fallback: bool = True) -> DecodeResult:
        """Decode every QR code in a 2-D uint8 grayscale image; never raises on image content.

        ``fallback=False``: the first (cheap) pass only.
        """
        ...


def _as_gray(image: np.ndarray) -> np.ndarray:
    """Accept grayscale or BGR; decoders work on one 8-bit channel."""
    if image.ndim == 3:
        import cv2

        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.dtype != np.uint8:
        return image.astype(np.uint8)
    return image


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))


class ZxingDecoder:
    """zxing-cpp, QR only. ``try_invert`` reads dark-mode screens without a second pass."""

    name = "zxing"

    def __init__(
        self, try_downscale: bool = True, try_rotate: bool = False, scale: float = 1.0
    ) -> None:
        try:
            import zxingcpp
        except ImportError as exc:
            raise HardwareError(
                f"zxing-cpp is not installed ({exc}): `pip install zxing-cpp`, "
                'or set [camera] decoder = "pyzbar"'
            ) from None
        self._zx: Any = zxingcpp
        self._formats = zxingcpp.BarcodeFormat.QRCode
        self._downscale = try_downscale
        # QR finder patterns are rotation-invariant; try_rotate only helps linear codes.
        self._rotate = try_rotate
        # > 1: enlarge first; zxing-cpp then reads codes of ~2-3 pixels per module.
        self._scale = scale

    def decode(self, gray: np.ndarray, fallback: bool = True) -> DecodeResult:
        start = time.perf_counter()
        gray = _as_gray(gray)
        if self._scale != 1.0 and min(gray.shape[:2]) >= 2:
            import cv2

            gray = cv2.resize(
                gray, None, fx=self._scale, fy=self._scale, interpolation=cv2.INTER_CUBIC
            )
        found = self._zx.read_barcodes(
            gray,
            formats=self._formats,
            try_rotate=self._rotate,
            try_downscale=self._downscale,
            try_invert=True,
            text_mode=self._zx.TextMode.Plain,
        )
        # Plain: the exact encoded text (HRI would rewrite GS1 codes as "(01)...").
        valid = [b for b in found if b.valid and b.text]
        texts = _unique([b.text for b in valid])
        ms = (time.perf_counter() - start) * 1000
        return DecodeResult(texts, self.name if texts else None, ms,
                            tuple(_zxing_found(b, self._scale) for b in valid))


def _zxing_found(barcode: Any, scale: float = 1.0) -> Found:
    """``scale``: the frame was enlarged by it before reading; corners are the frame's."""
    p = barcode.position
    corners = tuple((round(q.x / scale), round(q.y / scale)) for q in
                    (p.top_left, p.top_right, p.bottom_right, p.bottom_left))
    try:  # QR version v has 17 + 4v modules per side
        modules: int | None = 17 + 4 * int(barcode.extra.get("Version", ""))
    except (AttributeError, TypeError, ValueError):
        modules = None
    return Found(barcode.text, corners, modules)  # type: ignore[arg-type]


class PyzbarDecoder:
    """zbar through pyzbar, on an Otsu-binarised frame (and its inverse for dark mode).

    zbar cannot read light-on-dark codes, so standalone it also tries the inverted frame;
    as a fallback behind zxing-cpp (which already tried inverted) ``try_invert=False``
    keeps the cost of a frame without a code to one zbar pass. ``binarize=False`` hands
    zbar the frame as it is (zbar's own thresholding), which reads some photographs the
    Otsu pass loses, and the other way round.
    """

    name = "pyzbar"

    def __init__(self, try_invert: bool = True, binarize: bool = True) -> None:
        try:
            from pyzbar import pyzbar
        except ImportError as exc:
            raise HardwareError(
                f"pyzbar cannot load ({exc}): install the system zbar library "
                "(`apt install libzbar0`) and `pip install pyzbar`"
            ) from None
        import cv2

        self._pyzbar: Any = pyzbar
        self._cv2: Any = cv2
        self._symbols = [pyzbar.ZBarSymbol.QRCODE]
        self._invert = try_invert
        self._binarize = binarize

    def _read(self, binary: np.ndarray) -> list[Found]:
        out = []
        for symbol in self._pyzbar.decode(binary, symbols=self._symbols):
            data: bytes = symbol.data
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
            points = [(int(p.x), int(p.y)) for p in symbol.polygon][:4]
            if len(points) < 4:
                r = symbol.rect
                points = [(r.left, r.top), (r.left + r.width, r.top),
                          (r.left + r.width, r.top + r.height), (r.left, r.top + r.height)]
            out.append(Found(text, tuple(points)))  # type: ignore[arg-type]
        return out

    def decode(self, gray: np.ndarray, fallback: bool = True) -> DecodeResult:
        start = time.perf_counter()
        cv2 = self._cv2
        gray = _as_gray(gray)
        if self._binarize:
            _, binary = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        else:
            binary = gray
        found = self._read(binary)
        if not found and self._invert and fallback:
            found = self._read(cv2.bitwise_not(binary))
        found = [f for f in found if f.text]
        texts = _unique([f.text for f in found])
        ms = (time.perf_counter() - start) * 1000
        return DecodeResult(texts, self.name if texts else None, ms, tuple(found))


class FallbackDecoder:
    """The primary decoder, then each fallback in turn until one reads something.

    Fallbacks run only when the primary read nothing and the caller allows them
    (``fallback=True``, the default: single images get every pass). On a stream the
    frame pipeline decides per frame (hw.frames.ChangeGate), so a still scene costs
    one cheap primary pass per refresh.
    """

    def __init__(self, primary: Decoder, fallbacks: Sequence[Decoder]) -> None:
        self._primary = primary
        self._fallbacks = tuple(fallbacks)
        names = dict.fromkeys([primary.name, *(f.name for f in self._fallbacks)])
        self.name = "+".join(names)

    def decode(self, gray: np.ndarray, fallback: bool = True) -> DecodeResult:
        start = time.perf_counter()
        gray = _as_gray(gray)
        result = self._primary.decode(gray, fallback=fallback)
        if not result.texts and fallback:
            for decoder in self._fallbacks:
                result = decoder.decode(gray, fallback=False)
                if result.texts:
                    break
        return DecodeResult(result.texts, result.decoder, _since_ms(start), result.found)


def _since_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def zxing_available() -> bool:
    return importlib.util.find_spec("zxingcpp") is not None


def make_decoder(kind: DecoderKind = "auto") -> Decoder:
    """Build the configured decoder (``[camera] decoder``).

    ``auto``: zxing-cpp, then (fallback) zxing-cpp enlarged 1.5x, zbar on the frame as it
    is, zbar on an Otsu-binarised frame; the pyzbar chain alone when zxing-cpp has no
    wheel for this platform. ``zxing`` / ``pyzbar``: that library's passes only.
    """
    if kind not in ("auto", "zxing", "pyzbar"):
        raise HardwareError(f"unknown decoder {kind!r}: use auto, zxing or pyzbar")
    zbar = [PyzbarDecoder(try_invert=False, binarize=False), PyzbarDecoder(try_invert=False)]
    if kind == "pyzbar" or (kind == "auto" and not zxing_available()):
        # Otsu first (3x cheaper on an empty frame), its inverse for dark mode, then raw.
        return FallbackDecoder(PyzbarDecoder(), zbar[:1])
    zxing = [ZxingDecoder(), ZxingDecoder(scale=1.5)]
    if kind == "zxing":
        return FallbackDecoder(zxing[0], zxing[1:])
    return FallbackDecoder(zxing[0], [*zxing[1:], *zbar])
