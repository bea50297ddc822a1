"""Safe media intake against crafted bad files: every one gets a clear 4xx error, never a crash."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from gateway.errors import BadInput, TooLarge, UnsupportedMedia
from gateway.media import MediaLimits, decode_image, encode_image, resize_max_side, sniff

LIMITS = MediaLimits(max_bytes=5_000_000, max_pixels=20_000_000, working_max_side=1024)


def encode(arr: np.ndarray, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width×height but carries a tiny IDAT: a decompression bomb header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_zero_bytes_is_400() -> None:
    with pytest.raises(BadInput) as err:
        decode_image(b"", LIMITS)
    assert err.value.status == 400 and "empty" in err.value.message


def test_truncated_jpeg_is_400(coffee: np.ndarray) -> None:
    data = encode(coffee, "JPEG", quality=90)
    with pytest.raises(BadInput) as err:
        decode_image(data[: len(data) // 3], LIMITS)
    assert err.value.status == 400 and "truncated or corrupt" in err.value.message


def test_png_bomb_header_is_413_without_allocating() -> None:
    with pytest.raises(TooLarge) as err:
        decode_image(png_header_only(100_000, 100_000), LIMITS)
    assert err.value.status == 413 and "decompression bomb" in err.value.message


def test_text_named_jpg_is_415() -> None:
    with pytest.raises(UnsupportedMedia) as err:
        decode_image(b"hello, this is plainly text and not a JPEG at all", LIMITS)
    assert err.value.status == 415


def test_gif_is_415(coffee: np.ndarray) -> None:
    data = encode(coffee, "GIF")
    assert sniff(data) == "image/gif"
    with pytest.raises(UnsupportedMedia) as err:
        decode_image(data, LIMITS)
    assert "image/gif" in err.value.message


def test_too_many_bytes_is_413(coffee: np.ndarray) -> None:
    data = encode(coffee, "PNG")
    with pytest.raises(TooLarge):
        decode_image(data, MediaLimits(max_bytes=len(data) - 1))


def test_jpeg_header_then_garbage_is_400() -> None:
    with pytest.raises(BadInput) as err:
        decode_image(b"\xff\xd8\xff\xe0" + b"\x00" * 200, LIMITS)
    assert err.value.status == 400


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_supported_formats_decode(coffee: np.ndarray, fmt: str) -> None:
    data = encode(coffee, fmt)
    img = decode_image(data, LIMITS)
    assert (img.width, img.height) == (coffee.shape[1], coffee.shape[0])
    assert img.rgb.dtype == np.uint8 and img.rgb.shape[2] == 3
    assert img.mime == {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}[fmt]


def test_exif_orientation_applied() -> None:
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :40] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    img = decode_image(buf.getvalue(), LIMITS)
    assert (img.width, img.height) == (40, 80)
    assert img.rgb[:40].mean() > 200 and img.rgb[40:].mean() < 50  # white half now on top


def test_alpha_and_grey_become_rgb() -> None:
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0  # fully transparent: colour channels are still judged
    img = decode_image(encode(rgba, "PNG"), LIMITS)
    assert img.rgb.shape == (20, 20, 3) and int(img.rgb[..., 0].mean()) == 200
    grey = decode_image(encode(np.full((10, 10), 77, np.uint8), "PNG"), LIMITS)
    assert grey.rgb.shape == (10, 10, 3) and int(grey.rgb.mean()) == 77


def test_sixteen_bit_png_normalised() -> None:
    arr = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 600)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    img = decode_image(buf.getvalue(), LIMITS)
    assert img.rgb.max() == 255


def test_resized_once_to_working_size(astronaut: np.ndarray) -> None:
    big = np.asarray(Image.fromarray(astronaut).resize((2048, 2048)))
    img = decode_image(encode(big, "PNG"), LIMITS)
    assert img.working.shape[:2] == (1024, 1024) and img.scale == 2.0
    assert img.rgb.shape[:2] == (2048, 2048)


@pytest.mark.parametrize("kind", ["jpeg", "jpeg_rotated", "png_rgba", "png_grey", "webp"])
def test_working_copy_is_the_resize_of_the_decoded_pixels(astronaut: np.ndarray, kind: str) -> None:
    """The working copy is resized from the decoder's own image (no extra copy of the full image, #21.3):
    it must equal the box resize of the decoded pixels, as when it was made from a copy of them."""
    big = np.asarray(Image.fromarray(astronaut).resize((1536, 2048)))
    if kind == "jpeg_rotated":
        exif = Image.Exif()
        exif[0x0112] = 8  # rotate 90° counter-clockwise on display
        data = encode(big, "JPEG", exif=exif.tobytes(), quality=90)
    elif kind == "png_rgba":
        data = encode(np.dstack([big, np.full(big.shape[:2], 128, np.uint8)]), "PNG")
    elif kind == "png_grey":
        data = encode(big[..., 1].copy(), "PNG")
    else:
        data = encode(big, "JPEG" if kind == "jpeg" else "WEBP", quality=90)
    img = decode_image(data, LIMITS)
    want = np.asarray(Image.fromarray(img.rgb.copy()).resize(img.working.shape[1::-1], Image.Resampling.BOX))
    assert img.working.shape[:2] == ((768, 1024) if kind == "jpeg_rotated" else (1024, 768))
    assert np.array_equal(img.working, want)


@pytest.mark.parametrize("shape", [(2048, 2048), (1536, 2048), (2048, 1538), (2050, 1024), (2047, 2047), (3000, 1500)])
def test_working_copy_equals_pillow_box_resize_on_noise(shape: tuple[int, int]) -> None:
    """Halving (2048² → 1024², the common large render) takes OpenCV's path, any other size Pillow's:
    on noise, where every pair sum is as often odd as even (the rounding shows), both equal Pillow's box
    resize of the same pixels bit for bit."""
    rgb = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    working, scale = resize_max_side(rgb, 1024)
    want = np.asarray(Image.fromarray(rgb).resize(working.shape[1::-1], Image.Resampling.BOX))
    assert working.shape == want.shape and max(working.shape[:2]) == 1024
    assert np.array_equal(working, want)
    assert scale == max(shape) / 1024


def test_animated_webp_refused(coffee: np.ndarray) -> None:
    frames = [Image.fromarray(coffee), Image.fromarray(coffee[::-1].copy())]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedMedia):
        decode_image(buf.getvalue(), LIMITS)


@pytest.mark.parametrize("mime", ["image/jpeg", "image/png", "image/webp"])
def test_encode_roundtrip_keeps_type(coffee: np.ndarray, mime: str) -> None:
    assert sniff(encode_image(coffee, mime)) == mime
