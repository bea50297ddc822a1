"""Why: every byte a client sends is hostile until proven otherwise. This module is the only
place that turns uploaded bytes into pixels: the type is sniffed from the bytes (never the name),
size and pixel limits are checked *before* decoding (decompression bombs), decoding errors become
clear 4xx errors, EXIF orientation is applied and alpha/greyscale/16-bit are normalised to RGB.

Images are resized once to a working size shared by every model ("resize once, not per model").
Alpha is dropped, not composited: the colour channels are what a consumer can recover, so that
is what the classifiers judge (an image hidden behind a transparent alpha is still seen).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from gateway.errors import BadInput, TooLarge, UnsupportedMedia
from gateway.sniff import sniff as sniff  # re-exported: callers sniff through gateway.media

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
VIDEO_TYPES = ("video/mp4", "video/quicktime", "video/webm")
_PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}


@dataclass(frozen=True)
class MediaLimits:
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    working_max_side: int = 1024


@dataclass(frozen=True)
class DecodedImage:
    """An image ready for the models: `rgb` is full resolution (oriented), `working` the copy
    the models see (longest side <= working_max_side); `scale` maps working → full pixels."""

    sha256: str
    mime: str
    width: int
    height: int
    rgb: np.ndarray
    working: np.ndarray
    scale: float

    def describe(self) -> dict[str, object]:
        return {"sha256": self.sha256, "type": self.mime, "width": self.width, "height": self.height}




def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes, limits: MediaLimits, *, index: int = 0) -> DecodedImage:
    """Decode one uploaded image or raise a 4xx error that says what is wrong with it."""
    where = f"media part {index}"
    if len(data) == 0:
        raise BadInput(f"{where} is empty (0 bytes)", code="empty_media")
    if len(data) > limits.max_bytes:
        raise TooLarge(f"{where} is {len(data)} bytes; the limit is {limits.max_bytes}")
    mime = sniff(data)
    if mime is None:
        raise UnsupportedMedia(f"{where} is not a recognised image (JPEG, PNG or WebP expected)")
    if mime not in IMAGE_TYPES:
        raise UnsupportedMedia(f"{where} is {mime}; this endpoint takes JPEG, PNG or WebP images")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[mime]])
            width, height = image.size
            if width <= 0 or height <= 0:
                raise BadInput(f"{where} has no pixels ({width}x{height})", code="corrupt_media")
            if width * height > limits.max_pixels:
                raise TooLarge(
                    f"{where} declares {width}x{height} = {width * height} pixels; "
                    f"the limit is {limits.max_pixels}: the largest image whose every face is looked for at "
                    "full resolution within the time budget (also the decompression bomb guard); "
                    "downscale the render"
                )
            if getattr(image, "n_frames", 1) > 1:
                raise UnsupportedMedia(f"{where} is animated; animated images are not accepted here")
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # a copy of the whole image only when it turns
            rgb_image = _to_rgb(image)
    except (TooLarge, UnsupportedMedia, BadInput):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLarge(f"{where} decompresses beyond the pixel limit: {exc}") from None
    except MemoryError:
        raise TooLarge(f"{where} needs too much memory to decode") from None
    except Exception as exc:  # noqa: BLE001 - hostile bytes trip decoders in many ways (OSError,
        # SyntaxError, struct.error from a type-confused EXIF tag, ...): each is a corrupt file, never a 500
        raise BadInput(f"{where} is truncated or corrupt ({mime}): {exc}", code="corrupt_media") from None
    rgb = np.asarray(rgb_image, dtype=np.uint8)
    working, scale = resize_max_side(rgb, limits.working_max_side, source=rgb_image)
    h, w = rgb.shape[:2]
    return DecodedImage(sha256_hex(data), mime, w, h, rgb, working, scale)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        peak = max(float(arr.max()), 1.0)
        image = Image.fromarray((arr * (255.0 / peak)).clip(0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        return Image.fromarray(np.asarray(image)[:, :, :3].copy(), "RGB")
    return image.convert("RGB")


def resize_max_side(rgb: np.ndarray, max_side: int, *, source: Image.Image | None = None) -> tuple[np.ndarray, float]:
    """Downscale so the longest side is <= max_side (area filter); returns (image, working→full scale).
    `source`, the same pixels as a PIL RGB image (the decoder's), is resized instead of a copy of `rgb`
    made for PIL: the same result without copying the full image once more (#21.3)."""
    h, w = rgb.shape[:2]
    longest = max(h, w)
    if longest <= max_side:
        return rgb, 1.0
    factor = max_side / longest
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    if size == (w // 2, h // 2) and w % 2 == 0 and h % 2 == 0:
        return _halve(rgb), longest / max_side
    pil = source if source is not None and source.mode == "RGB" and source.size == (w, h) else Image.fromarray(rgb)
    small = pil.resize(size, Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8), longest / max_side


def _halve(rgb: np.ndarray) -> np.ndarray:
    """Pillow's box resize to exactly half of an even-sided RGB image, bit for bit, in ~0.45× of its CPU
    (2048² → 1024²: the common large render; serial work before any model starts, #14.7). At exactly
    half, Pillow's box filter averages each pair of columns, rounding half up, into 8-bit pixels, then
    each pair of rows the same way; OpenCV's bilinear resize to exactly half samples at the middle of
    each pair with the same 8-bit fixed-point rounding, one axis at a time
    (tests/media/test_intake.py checks equality on noise and on decoded renders)."""
    import cv2

    h, w = rgb.shape[:2]
    rows = cv2.resize(np.ascontiguousarray(rgb), (w // 2, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(cv2.resize(rows, (w // 2, h // 2), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)


def encode_image(rgb: np.ndarray, mime: str, *, quality: int = 92) -> bytes:
    """Encode pixels in the same media type the client sent (release returns what it received)."""
    buf = io.BytesIO()
    image = Image.fromarray(rgb)
    fmt = _PIL_FORMATS[mime]
    if fmt == "JPEG" or fmt == "WEBP":
        image.save(buf, fmt, quality=quality)
    else:
        image.save(buf, fmt)
    return buf.getvalue()
