"""Decoding: the real-photo corpus in tests/data at or above its README table, and rendered
camera conditions (blur, tilt, low contrast, glare, dark mode) at credential size."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from hw import render
from hw.decoders import DecodeResult, PyzbarDecoder, ZxingDecoder, make_decoder
from tests.conftest import CORPUS, require

# Better of zxing-cpp and pyzbar per folder, from tests/data/zxing-qr/README.md.
CORPUS_FLOOR = {"qrcode-1": 1.00, "qrcode-2": 0.91, "qrcode-3": 1.00}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def _zbar_loads() -> bool:
    try:
        from pyzbar import pyzbar  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _need_decoders() -> None:
    require(_zbar_loads(), "zbar (for pyzbar)", "apt install libzbar0")
    require(importlib.util.find_spec("zxingcpp") is not None, "zxing-cpp", "pip install zxing-cpp")


@pytest.mark.parametrize("folder", sorted(CORPUS_FLOOR))
def test_corpus_reads_at_least_the_readme_table(folder: str) -> None:
    _need_decoders()
    decoder = make_decoder("auto")
    images = sorted(p for p in (CORPUS / folder).iterdir() if p.suffix in IMAGE_SUFFIXES)
    assert images
    read = 0
    for path in images:
        expected = path.with_suffix(".txt").read_bytes().decode("utf-8")
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        assert gray is not None, f"{path} unreadable by OpenCV"
        read += expected in decoder.decode(gray).texts
    assert read / len(images) >= CORPUS_FLOOR[folder], f"{folder}: {read}/{len(images)}"


TEXT = render.credential_like_text()
CODE = render.qr_image(TEXT, module_px=5)  # version 12: 65 modules -> 325 px, as aimed
SCENE = render.scene(1280, 720)

CONDITIONS = {
    "clean": lambda: render.place(SCENE, CODE),
    "blur": lambda: render.place(SCENE, render.blur(CODE, 1.6)),
    "tilt_35deg": lambda: render.place(SCENE, render.tilt(CODE, 35)),
    "low_contrast": lambda: render.noisy(render.place(SCENE, render.low_contrast(CODE)), 4),
    "glare": lambda: render.place(SCENE, render.glare(CODE)),
    "dark_mode": lambda: render.place(SCENE, render.invert(CODE)),
    "dark_mode_blur": lambda: render.place(SCENE, render.blur(render.invert(CODE), 1.2)),
}


def test_rendered_code_is_credential_sized() -> None:
    version = (render.qr_modules(TEXT).shape[0] - 17) // 4
    assert 10 <= version <= 12
    assert len(TEXT) >= 300


@pytest.mark.parametrize("condition", sorted(CONDITIONS))
def test_auto_reads_camera_conditions(condition: str) -> None:
    _need_decoders()
    result = make_decoder("auto").decode(CONDITIONS[condition]())
    assert result.texts == [TEXT]
    assert result.decoder == "zxing"
    assert result.ms > 0


@pytest.mark.parametrize("condition", ["clean", "blur", "low_contrast", "glare", "dark_mode"])
def test_pyzbar_alone_reads_the_common_conditions(condition: str) -> None:
    """The decoder of 32-bit Pi OS, where zxing-cpp has no wheel."""
    require(_zbar_loads(), "zbar (for pyzbar)", "apt install libzbar0")
    result = PyzbarDecoder().decode(CONDITIONS[condition]())
    assert result.texts == [TEXT]
    assert result.decoder == "pyzbar"


def test_empty_frame_reads_nothing() -> None:
    _need_decoders()
    result = make_decoder("auto").decode(SCENE)
    assert result == DecodeResult([], None, result.ms)


def test_colour_frame_is_accepted() -> None:
    _need_decoders()
    bgr = cv2.cvtColor(CONDITIONS["clean"](), cv2.COLOR_GRAY2BGR)
    assert ZxingDecoder().decode(bgr).texts == [TEXT]


def test_two_codes_in_one_frame_are_both_reported() -> None:
    _need_decoders()
    a = render.qr_image("QM1:FIRST", module_px=6)
    b = render.qr_image("QM1:SECOND", module_px=6)
    frame = render.place(render.place(SCENE, a, cx=350, cy=360), b, cx=930, cy=360)
    assert sorted(make_decoder("auto").decode(frame).texts) == ["QM1:FIRST", "QM1:SECOND"]


def test_fallback_chain_reads_what_zxing_first_pass_misses() -> None:
    """Corpus image qrcode-2/28: zxing-cpp 3.1's plain pass misses it; the fallback passes
    (zxing-cpp enlarged, and zbar on its own) each read it."""
    _need_decoders()
    path = CORPUS / "qrcode-2" / "28.webp"
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    expected = [path.with_suffix(".txt").read_text().strip()]
    assert ZxingDecoder().decode(gray).texts == []
    assert make_decoder("auto").decode(gray).texts == expected
    result = make_decoder("pyzbar").decode(gray)
    assert (result.texts, result.decoder) == (expected, "pyzbar")


def test_exact_bytes_text_for_gs1_codes() -> None:
    """The gate must see the text as encoded, not a human-readable rewrite."""
    _need_decoders()
    path = CORPUS / "qrcode-2" / "gs1-figure-4.15.1-2.png"
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert make_decoder("zxing").decode(gray).texts == [
        path.with_suffix(".txt").read_bytes().decode()
    ]


def test_unknown_decoder_kind_is_a_clear_error() -> None:
    from agent.core.errors import HardwareError

    with pytest.raises(HardwareError, match="auto, zxing or pyzbar"):
        make_decoder("opencv")  # type: ignore[arg-type]


def test_garbage_arrays_do_not_raise() -> None:
    _need_decoders()
    decoder = make_decoder("auto")
    for image in (np.zeros((1, 1), np.uint8), np.zeros((10, 3000), np.uint8)):
        assert decoder.decode(image).texts == []


def test_fallback_passes_run_only_when_allowed() -> None:
    """A stream frame without the fallback's permission gets the first pass only."""
    _need_decoders()
    path = CORPUS / "qrcode-2" / "28.webp"
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    decoder = make_decoder("auto")
    assert decoder.decode(gray, fallback=False).texts == []
    assert decoder.decode(gray).texts == [path.with_suffix(".txt").read_text().strip()]


def _zxing_alone(gray: np.ndarray) -> list[str]:
    """zxing-cpp as a user would call it: defaults, QR only, the exact encoded text."""
    import zxingcpp

    found = zxingcpp.read_barcodes(
        gray, formats=zxingcpp.BarcodeFormat.QRCode, text_mode=zxingcpp.TextMode.Plain
    )
    return [b.text for b in found]


def _pyzbar_alone(gray: np.ndarray) -> list[str]:
    """pyzbar as a user would call it: the grayscale frame, QR only."""
    from pyzbar import pyzbar

    found = pyzbar.decode(gray, symbols=[pyzbar.ZBarSymbol.QRCODE])
    return [s.data.decode("utf-8", "replace") for s in found]


@pytest.mark.parametrize("folder", sorted(CORPUS_FLOOR))
def test_product_reads_every_image_either_library_reads_alone(folder: str) -> None:
    _need_decoders()
    decoder = make_decoder("auto")
    missed = []
    union = 0
    for path in sorted(p for p in (CORPUS / folder).iterdir() if p.suffix in IMAGE_SUFFIXES):
        expected = path.with_suffix(".txt").read_bytes().decode("utf-8")
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if expected in _zxing_alone(gray) or expected in _pyzbar_alone(gray):
            union += 1
            if expected not in decoder.decode(gray).texts:
                missed.append(path.name)
    assert union > 0
    assert missed == [], f"{folder}: read by zxing-cpp or pyzbar alone, not by the product"


def test_small_modules_are_read_by_the_enlarged_pass() -> None:
    """2.5 pixels per module, slightly blurred: too small for zxing-cpp's plain pass."""
    _need_decoders()
    code = render.blur(render.qr_image(TEXT, module_px=3), 1.4)
    frame = render.place(SCENE, cv2.resize(code, None, fx=0.85, fy=0.85))
    if _zxing_alone(frame) == [TEXT]:
        pytest.fail("the frame no longer exercises the enlarged pass: make it harder")
    assert make_decoder("auto").decode(frame).texts == [TEXT]
