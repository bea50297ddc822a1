"""Why: tests and the demo need an upstream whose output is known in advance. Pictures are a
pure function of the prompt (gradient + shapes seeded by the prompt's hash); a prompt naming
"astronaut" returns skimage's astronaut (a real face reaches the output check); "solid red" /
"solid yellow" return flat colours, which the test policy's `fake` NSFW adapter reads as unsafe
/ suggestive (the deny and review paths without explicit imagery). An edit composes the
reference image into a scene, so a face in the input reaches the output."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

MAX_SIDE = 1024
DEFAULT_SIZE = (512, 512)


def parse_size(size: str | None) -> tuple[int, int]:
    """`WxH` clamped to 64..1024; anything else (None, `auto`) is 512x512."""
    if not size or "x" not in size:
        return DEFAULT_SIZE
    w, _, h = size.partition("x")
    if not (w.isdigit() and h.isdigit()):
        return DEFAULT_SIZE
    return max(64, min(MAX_SIDE, int(w))), max(64, min(MAX_SIDE, int(h)))


def _seed(prompt: str, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{index}:{prompt}".encode()).digest()[:8], "big")


def _astronaut() -> np.ndarray:
    import skimage.data

    loader: Callable[[], Any] = skimage.data.astronaut
    return np.asarray(loader(), dtype=np.uint8)


def scene(prompt: str, size: tuple[int, int], index: int = 0) -> np.ndarray:
    """A deterministic picture for `prompt`: two-colour gradient plus a few discs and boxes."""
    width, height = size
    rng = np.random.default_rng(_seed(prompt, index))
    top, bottom = rng.integers(30, 226, size=(2, 3))
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    img = (top[None, None, :] * (1 - t) + bottom[None, None, :] * t) * np.ones((1, width, 1), np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(int(rng.integers(3, 7))):
        colour = rng.integers(0, 256, size=3)
        cx, cy = rng.integers(0, width), rng.integers(0, height)
        r = int(rng.integers(min(width, height) // 16, min(width, height) // 4))
        if rng.random() < 0.5:
            img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = colour
        else:
            img[max(0, cy - r) : cy + r, max(0, cx - r) : cx + r] = colour
    out: np.ndarray = np.clip(img, 0, 255).astype(np.uint8)
    return out


def generate(prompt: str, size: str | None, index: int = 0) -> np.ndarray:
    lowered = prompt.lower()
    if "solid red" in lowered:
        return np.full((*parse_size(size)[::-1], 3), (255, 0, 0), np.uint8)
    if "solid yellow" in lowered:
        return np.full((*parse_size(size)[::-1], 3), (255, 255, 0), np.uint8)
    if "astronaut" in lowered:
        return _astronaut()
    return scene(prompt, parse_size(size), index)


def compose(reference: np.ndarray, prompt: str, size: str | None, index: int = 0) -> np.ndarray:
    """Paste the reference (scaled to fit 80% of the canvas, never upscaled past 1:1) into a scene."""
    canvas = scene(
        prompt,
        parse_size(size) if size else (max(512, reference.shape[1]), max(512, reference.shape[0])),
        index,
    )
    ch, cw = canvas.shape[:2]
    rh, rw = reference.shape[:2]
    scale = min(1.0, 0.8 * cw / rw, 0.8 * ch / rh)
    if scale < 1.0:
        pil = Image.fromarray(reference).resize(
            (max(1, int(rw * scale)), max(1, int(rh * scale))), Image.Resampling.LANCZOS
        )
        reference = np.asarray(pil)
        rh, rw = reference.shape[:2]
    y, x = (ch - rh) // 2, (cw - rw) // 2
    canvas[y : y + rh, x : x + rw] = reference
    return canvas


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def encode_png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG", compress_level=1)
    return buf.getvalue()
