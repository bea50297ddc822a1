"""Deterministic test images for the watermark robustness table (bench/release.py).

Why: a mark's figures are only as good as the images they were measured on. This builds, from
images that ship inside packages (scikit-image's data folder, matplotlib's Grace Hopper) and
from generators, a fixed set in five kinds — portraits, scenes, flat graphics, noise and small
renders (256-512 px) — at sizes from 256 to 1024 px, plus an endless stream of *unmarked*
generated images for the false-positive rate. Same seed, same images, on every machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

Image8 = NDArray[np.uint8]

_SCENES = ("coffee", "chelsea", "rocket", "camera", "brick", "grass", "gravel", "moon", "clock", "coins",
           "hubble_deep_field", "immunohistochemistry", "retina", "stereo_motorcycle", "cell")
_GRAPHICS = ("logo", "colorwheel", "page", "text", "checkerboard", "horse", "binary_blobs", "shepp_logan_phantom")


@dataclass(frozen=True)
class TestImage:
    name: str
    kind: str  # portrait | scene | graphic | noise | small
    rgb: Image8


def _rgb(image: Any) -> Image8:
    arr = np.asarray(image[0] if isinstance(image, tuple) else image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = np.clip(arr / max(float(arr.max()), 1e-9) * 255, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 255
        arr = (arr[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3])


def _sources() -> dict[str, Image8]:
    import matplotlib
    import skimage.data
    from PIL import Image

    data: Any = skimage.data
    out = {name: _rgb(getattr(data, name)()) for name in ("astronaut", *_SCENES, *_GRAPHICS)}
    with Image.open(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")) as img:
        out["grace_hopper"] = np.asarray(img.convert("RGB")).copy()
    return out


def _fit(rgb: Image8, side: int, rng: np.random.Generator, aspect: float = 1.0) -> Image8:
    """A random crop of ``rgb`` with the given aspect, resized so its longer side is ``side``."""
    h, w = rgb.shape[:2]
    crop_h = int(min(h, w / aspect) * rng.uniform(0.6, 1.0))
    crop_w = min(w, int(crop_h * aspect))
    y = int(rng.integers(0, h - crop_h + 1))
    x = int(rng.integers(0, w - crop_w + 1))
    part = rgb[y:y + crop_h, x:x + crop_w]
    scale = side / max(crop_h, crop_w)
    size = (max(8, round(crop_w * scale)), max(8, round(crop_h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return np.ascontiguousarray(np.asarray(cv2.resize(part, size, interpolation=interp), dtype=np.uint8))


def _graphic(rng: np.random.Generator, side: int) -> Image8:
    """Flat colours, shapes and text: what logos, diagrams and UI renders look like."""
    h, w = side, int(side * rng.choice([1.0, 1.333, 0.75]))
    palette = rng.integers(0, 256, (5, 3))
    img = np.empty((h, w, 3), np.uint8)
    img[:] = palette[0]
    for _ in range(int(rng.integers(3, 12))):
        color = tuple(int(c) for c in palette[int(rng.integers(1, 5))])
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x0, y0), (x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))),
                          color, -1)
        else:
            cv2.circle(img, (x0, y0), int(rng.integers(10, side // 4)), color, -1, lineType=cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 4))):
        cv2.putText(img, "consentgate", (int(rng.integers(0, w // 2)), int(rng.integers(20, h))),
                    cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.5, 2.0)),
                    tuple(int(c) for c in palette[int(rng.integers(0, 5))]), 2, cv2.LINE_AA)
    return img


def _noise(rng: np.random.Generator, side: int) -> Image8:
    kind = int(rng.integers(0, 4))
    if kind == 0:  # white noise
        return rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    if kind == 1:  # blurred noise (clouds)
        base = rng.normal(128, 60, (side, side, 3)).astype(np.float32)
        return np.clip(cv2.GaussianBlur(base, (0, 0), float(rng.uniform(1, 8))) * 3 - 256, 0, 255).astype(np.uint8)
    if kind == 2:  # 1/f noise
        freq = np.fft.fftfreq(side)
        radius = np.hypot(freq[:, None], freq[None, :])
        radius[0, 0] = 1.0
        spectrum = (rng.normal(size=(side, side)) + 1j * rng.normal(size=(side, side))) / radius
        field = np.real(np.fft.ifft2(spectrum))
        field = (field - field.mean()) / (field.std() + 1e-9) * 50 + 128
        return np.repeat(np.clip(field, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    # gradient + light grain
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    grad = ramp[None, :, None] * rng.uniform(0.3, 1, 3) + ramp[:, None, None] * rng.uniform(0, 0.5, 3)
    return np.clip(grad / grad.max() * 255 + rng.normal(0, 2, (side, side, 3)), 0, 255).astype(np.uint8)


def marked_set(n: int = 200, seed: int = 23) -> list[TestImage]:
    """``n`` images (>= 200 for the published table) in the five kinds, sizes 256-1024 px."""
    rng = np.random.default_rng(seed)
    src = _sources()
    portraits = ("astronaut", "grace_hopper")
    photos = tuple(k for k in src if k in _SCENES)
    graphics = tuple(k for k in src if k in _GRAPHICS)
    shares = {"portrait": 0.2, "scene": 0.35, "graphic": 0.15, "noise": 0.1, "small": 0.2}
    out: list[TestImage] = []
    for kind, share in shares.items():
        for i in range(max(1, round(n * share))):
            side = int(rng.choice([256, 320, 384, 448, 512])) if kind == "small" else \
                int(rng.choice([512, 640, 768, 896, 1024]))
            aspect = float(rng.choice([1.0, 1.5, 0.75, 1.333]))
            if kind == "portrait":
                name = portraits[i % 2]
                img = _fit(src[name], side, rng, aspect)
                if rng.random() < 0.5:
                    img = np.ascontiguousarray(img[:, ::-1])
            elif kind == "scene":
                name = photos[i % len(photos)]
                img = _fit(src[name], side, rng, aspect)
            elif kind == "graphic":
                if i % 2 == 0:
                    name = graphics[(i // 2) % len(graphics)]
                    img = _fit(src[name], side, rng, aspect)
                else:
                    name, img = "drawn", _graphic(rng, side)
            elif kind == "noise":
                name, img = "noise", _noise(rng, side)
            else:
                name = (*portraits, *photos)[i % (2 + len(photos))]
                img = _fit(src[name], side, rng, aspect)
            if min(img.shape[:2]) < 128:  # a mark needs one 128-px tile
                img = np.ascontiguousarray(cv2.resize(img, (max(128, img.shape[1]), max(128, img.shape[0]))))
            out.append(TestImage(f"{kind}-{i:03d}-{name}", kind, img))
    return out[:n] if len(out) >= n else out


def unmarked_stream(count: int, seed: int = 1_000_003, side: int = 256) -> Iterator[Image8]:
    """``count`` unmarked images for the false-positive rate: crops of the packaged photos at
    random scales, drawn graphics and noise of every kind, ``side`` px."""
    rng = np.random.default_rng(seed)
    src = list(_sources().values())
    for i in range(count):
        pick = i % 4
        if pick in (0, 1):
            yield _fit(src[int(rng.integers(0, len(src)))], side, rng, float(rng.choice([1.0, 1.333])))
        elif pick == 2:
            yield _graphic(rng, side)
        else:
            yield _noise(rng, side)
