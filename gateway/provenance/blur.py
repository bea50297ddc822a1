"""Redaction of face regions for the ``redact`` obligation.

Why: a policy can allow a render on condition that some faces are made unrecognisable. A
plain Gaussian blur of a large face can leave enough structure for a face matcher, so each box
is pixelated to a coarse grid (at most ``cells`` cells across) and then blurred, over the box
grown by ``margin`` of its size. The result must no longer match the subject (tests check it
with the face model where available); it is applied before watermarking and signing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["blur_regions"]


def blur_regions(rgb: NDArray[np.uint8], bboxes: Iterable[Sequence[float]], *, cells: int = 8,
                 margin: float = 0.15) -> NDArray[np.uint8]:
    """Return a copy of ``rgb`` with every ``(x0, y0, x1, y1)`` box pixelated and blurred."""
    if rgb.ndim != 3 or rgb.dtype != np.uint8:
        raise ValueError("expected an RGB uint8 array")
    out = rgb.copy()
    height, width = rgb.shape[:2]
    for box in bboxes:
        x0, y0, x1, y1 = (float(v) for v in box[:4])
        grow_x, grow_y = (x1 - x0) * margin, (y1 - y0) * margin
        left, top = max(0, int(np.floor(x0 - grow_x))), max(0, int(np.floor(y0 - grow_y)))
        right, bottom = min(width, int(np.ceil(x1 + grow_x))), min(height, int(np.ceil(y1 + grow_y)))
        if right - left < 1 or bottom - top < 1:
            continue
        region = out[top:bottom, left:right]
        h, w = region.shape[:2]
        small_w = max(1, min(cells, w))
        small_h = max(1, min(cells, round(h * small_w / max(w, 1))))
        coarse = cv2.resize(region, (small_w, small_h), interpolation=cv2.INTER_AREA)
        blocky = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_NEAREST)
        kernel = max(3, (min(w, h) // max(small_w, 1)) | 1)
        out[top:bottom, left:right] = cv2.GaussianBlur(blocky, (kernel, kernel), 0)
    return out
