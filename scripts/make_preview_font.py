"""Write hw/preview_font.npz: the installer preview's ASCII glyphs, drawn once by OpenCV.

OpenCV 5's putText loads a TrueType engine and its fonts on first use (~9 MB of the
daemon's memory, measured by benchmarks/bench_gateweb.py); the preview needs 95 small
glyphs, so they are drawn here once, on a developer machine, and the gate only blits
them. Re-run after changing the size:  .venv/bin/python scripts/make_preview_font.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SCALE = 0.45
ASCENT, DESCENT = 12, 4
OUT = Path(__file__).resolve().parent.parent / "hw" / "preview_font.npz"


def main() -> None:
    glyphs, offsets = [], [0]
    for code in range(32, 127):
        ch = chr(code)
        (width, _), _ = cv2.getTextSize(ch, cv2.FONT_HERSHEY_SIMPLEX, SCALE, 1)
        width = max(width, 3)
        canvas = np.zeros((ASCENT + DESCENT, width + 1), np.uint8)
        cv2.putText(canvas, ch, (0, ASCENT), cv2.FONT_HERSHEY_SIMPLEX, SCALE, 255, 1,
                    cv2.LINE_AA)
        glyphs.append(canvas)
        offsets.append(offsets[-1] + canvas.shape[1])
    np.savez_compressed(OUT, glyphs=np.concatenate(glyphs, axis=1),
                        offsets=np.array(offsets, np.int32), ascent=ASCENT)
    print(f"{OUT}: {len(glyphs)} glyphs, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
