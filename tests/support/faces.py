"""Why: "every face of 40 px or more is found at any render size" needs renders with faces of known
size and place. These are generated paste-ins of the real faces that ship in packages (skimage's
astronaut, matplotlib's Grace Hopper) onto packaged pictures without people, at a chosen face height,
in-plane rotation and mirror — used by the coverage tests and `bench/coverage.py` alike.

Face boxes are dlib HOG boxes on the originals (brows to chin), so "a 40 px face" is a 40 px dlib box.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]
# (x0, y0, x1, y1) of the face in each original (dlib HOG, upsample 1)
FACE_BOXES: dict[str, Box] = {"astronaut": (175, 76, 265, 166), "hopper": (180, 139, 366, 325)}
NO_PEOPLE = ("coffee", "chelsea", "rocket", "coins", "horse", "hubble_deep_field", "immunohistochemistry",
             "retina", "moon", "brick", "grass", "gravel", "page", "text", "logo", "colorwheel", "cat")


@functools.cache
def original(name: str) -> np.ndarray:
    """A packaged image as RGB uint8: a face source ("astronaut", "hopper") or a skimage picture."""
    if name == "hopper":
        import matplotlib
        from PIL import Image

        with Image.open(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")) as img:
            return np.asarray(img.convert("RGB"))
    import skimage.data

    arr = np.asarray(getattr(skimage.data, name)())
    if arr.dtype != np.uint8:
        arr = (arr * 255 if arr.max() <= 1 else arr).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])


def canvas(background: str, width: int, height: int | None = None) -> np.ndarray:
    """A packaged picture without people stretched to width × height (a writable copy)."""
    import cv2

    return np.ascontiguousarray(cv2.resize(original(background), (width, height or width),
                                           interpolation=cv2.INTER_LINEAR))


def canvas_from(image: np.ndarray, side: int) -> np.ndarray:
    """`image` resized (area) so its longer side is `side`, as the intake's working copy is."""
    import cv2

    k = side / max(image.shape[:2])
    return np.ascontiguousarray(cv2.resize(image, (round(image.shape[1] * k), round(image.shape[0] * k)),
                                           interpolation=cv2.INTER_AREA))


@dataclass(frozen=True)
class Pasted:
    source: str
    box: Box  # where the face landed, in canvas pixels
    face_px: int
    angle: float


def paste(image: np.ndarray, source: str, face_px: int, x: int, y: int, *, angle: float = 0.0,
          mirror: bool = False, margin: float = 0.9) -> Pasted:
    """Paste `source`'s head (face box + `margin` box-widths around it) in place so the face box is
    `face_px` high with its top-left at (x, y), rotated by `angle` degrees about the face centre."""
    import cv2

    img = original(source)
    x0, y0, x1, y1 = FACE_BOXES[source]
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    r = 0.5 + margin
    hx0, hy0 = int(max(0, cx - r * w)), int(max(0, cy - r * h))
    hx1, hy1 = int(min(img.shape[1], cx + r * w)), int(min(img.shape[0], cy + r * h))
    crop = img[hy0:hy1, hx0:hx1]
    fx0, fy0, fx1, fy1 = x0 - hx0, y0 - hy0, x1 - hx0, y1 - hy0
    if mirror:
        crop = crop[:, ::-1]
        fx0, fx1 = crop.shape[1] - fx1, crop.shape[1] - fx0
    k = face_px / (fy1 - fy0)
    crop = cv2.resize(crop, (max(1, round(crop.shape[1] * k)), max(1, round(crop.shape[0] * k))),
                      interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
    fx0, fy0, fx1, fy1 = (round(v * k) for v in (fx0, fy0, fx1, fy1))
    mask = np.full(crop.shape[:2], 255, np.uint8)
    if angle:
        rot = cv2.getRotationMatrix2D(((fx0 + fx1) / 2, (fy0 + fy1) / 2), angle, 1.0)
        crop = cv2.warpAffine(crop, rot, (crop.shape[1], crop.shape[0]), borderMode=cv2.BORDER_REFLECT)
        mask = cv2.warpAffine(mask, rot, (crop.shape[1], crop.shape[0]))
    ox, oy = x - fx0, y - fy0
    height, width = image.shape[:2]
    dx0, dy0, dx1, dy1 = max(0, ox), max(0, oy), min(width, ox + crop.shape[1]), min(height, oy + crop.shape[0])
    sx0, sy0 = dx0 - ox, dy0 - oy
    sub = crop[sy0:sy0 + dy1 - dy0, sx0:sx0 + dx1 - dx0]
    keep = (mask[sy0:sy0 + dy1 - dy0, sx0:sx0 + dx1 - dx0] > 127)[..., None]
    image[dy0:dy1, dx0:dx1] = np.where(keep, sub, image[dy0:dy1, dx0:dx1])
    return Pasted(source, (x, y, x + fx1 - fx0, y + fy1 - fy0), face_px, angle)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def found(pasted: Pasted, boxes: list[tuple[int, int, int, int]], min_iou: float = 0.3) -> bool:
    return any(iou(pasted.box, b) >= min_iou for b in boxes)


def collage(tiles: list[np.ndarray], grid: int, tile_px: int) -> np.ndarray:
    """A grid × grid collage, each tile resized to tile_px² (row-major, tiles reused in turn)."""
    import cv2

    out = np.zeros((grid * tile_px, grid * tile_px, 3), np.uint8)
    for i in range(grid * grid):
        r, c = divmod(i, grid)
        out[r * tile_px:(r + 1) * tile_px, c * tile_px:(c + 1) * tile_px] = cv2.resize(
            tiles[i % len(tiles)], (tile_px, tile_px), interpolation=cv2.INTER_AREA)
    return out
