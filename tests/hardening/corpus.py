"""Why: hostile media is built by the tests, byte by byte, so the corpus needs no binary files in the
repository and every item says what it is: decompression bombs (PNG, WebP, GIF), truncated files,
polyglots (a JPEG that is also a ZIP, a PNG with HTML after IEND), huge and malformed EXIF, and
MP4s with broken boxes. Each item is (name, bytes, whether the gateway must refuse it before decoding
pixels, and the payload a release must never carry out)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

HTML = b"<html><body><script>alert('consentgate')</script></body></html>"


@dataclass(frozen=True)
class Item:
    name: str
    data: bytes
    kind: str  # "image" | "video" | "other"
    pre_decode: bool = False  # must be refused from its header alone: tiny memory growth
    payload: bytes | None = None  # bytes a released file must not carry (polyglot tails)


def _encode(arr: np.ndarray, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def _png(width: int, height: int, idat: bytes, extra: bytes = b"", color_type: int = 2) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _zlib_zeros(n: int) -> bytes:
    comp = zlib.compressobj(9)
    block = b"\0" * (1 << 20)
    out = [comp.compress(block) for _ in range(n >> 20)]
    out.append(comp.compress(b"\0" * (n & ((1 << 20) - 1))))
    out.append(comp.flush())
    return b"".join(out)


def png_pixel_bomb(side: int = 30_000) -> bytes:
    """IHDR claims side×side RGB; IDAT is a few kB of zlib that would inflate to all of it."""
    return _png(side, side, _zlib_zeros(4 << 20))


def png_real_bomb(side: int = 2100) -> bytes:
    """A real, valid PNG of zeros just over a 4-Mpixel limit (a few kB on the wire)."""
    raw = b"".join(b"\0" + b"\0" * (side * 3) for _ in range(side))
    return _png(side, side, zlib.compress(raw, 9))


def png_text_bomb(small: np.ndarray) -> bytes:
    """A small valid PNG with a zTXt chunk that inflates to 64 MB (Pillow caps text chunks)."""
    base = _encode(small, "PNG")
    ztxt = _chunk(b"zTXt", b"Comment\0\0" + _zlib_zeros(64 << 20))
    return base[:33] + ztxt + base[33:]


def png_iccp_bomb(small: np.ndarray) -> bytes:
    """A small valid PNG with an iCCP (colour profile) chunk that inflates to 64 MB."""
    base = _encode(small, "PNG")
    iccp = _chunk(b"iCCP", b"icc\0\0" + _zlib_zeros(64 << 20))
    return base[:33] + iccp + base[33:]


def webp_canvas_bomb() -> bytes:
    """VP8X extended header with a 16384×16384 canvas (a few bytes of payload)."""
    w = h = 16384
    vp8x = bytes([0x10, 0, 0, 0]) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    body = (
        b"WEBP"
        + b"VP8X"
        + struct.pack("<I", len(vp8x))
        + vp8x
        + b"VP8L"
        + struct.pack("<I", 5)
        + b"\x2f"
        + b"\xff\xff\xff\x0f"
        + b"\0"
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_lossless_bomb() -> bytes:
    """A VP8L bitstream header that claims 16384×16384."""
    w = h = 16384
    bits = (w - 1) | ((h - 1) << 14)
    vp8l = b"\x2f" + struct.pack("<I", bits) + b"\0" * 32
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l
    return b"RIFF" + struct.pack("<I", len(body)) + body


def gif_bomb() -> bytes:
    """A GIF whose logical screen and single frame are 65535×65535, LZW-compressed to almost nothing."""
    header = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x80\x00\x00" + b"\0\0\0" + b"\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHH", 0, 0, 65535, 65535) + b"\x00" + b"\x02" + b"\x02\x4c\x01\x00"
    return header + image + b"\x3b"


def jpeg_zip_polyglot(arr: np.ndarray) -> bytes:
    """A valid JPEG followed by a ZIP archive (readable by unzip, which reads from the end)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.html", HTML)
    return _encode(arr, "JPEG", quality=85) + buf.getvalue()


def png_html_polyglot(arr: np.ndarray) -> bytes:
    """A valid PNG with an HTML document after IEND."""
    return _encode(arr, "PNG") + HTML


def _tiff_ifd(entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """Big-endian TIFF header + one IFD; values longer than 4 bytes go after the IFD."""
    head = b"MM\x00*" + struct.pack(">I", 8)
    data_at = 8 + 2 + 12 * len(entries) + 4
    table, data = b"", b""
    for tag, typ, count, value in entries:
        if len(value) <= 4:
            table += struct.pack(">HHI", tag, typ, count) + value.ljust(4, b"\0")
        else:
            table += struct.pack(">HHII", tag, typ, count, data_at + len(data))
            data += value
    return head + struct.pack(">H", len(entries)) + table + b"\0\0\0\0" + data


def jpeg_huge_exif(arr: np.ndarray) -> bytes:
    """A JPEG with an EXIF segment near the 64 KB segment limit (thousands of IFD entries) and 16
    more APP1 segments of junk."""
    entries = [(0x0112, 3, 1, struct.pack(">H", 6))]
    entries += [(0x9000 + i, 7, 4, b"abcd") for i in range(5000)]
    exif = b"Exif\x00\x00" + _tiff_ifd(entries)
    exif = exif[:65000]
    jpeg = _encode(arr, "JPEG", quality=80, exif=exif)
    junk = b"".join(
        b"\xff\xe1" + struct.pack(">H", 65000) + b"Exif\x00\x00" + b"\xa5" * (65000 - 8) for _ in range(16)
    )
    return jpeg[:2] + junk + jpeg[2:]


def jpeg_exif_type_confusion(arr: np.ndarray) -> bytes:
    """EXIF whose PageNumber tag (SHORT in TIFF) is stored as ASCII, with an orientation that makes
    the decoder rotate the image and re-serialise the EXIF (Pillow then fails inside struct.pack)."""
    text = b"x" * 100 + b"\0"
    exif = b"Exif\x00\x00" + _tiff_ifd([(0x0129, 2, len(text), text), (0x0112, 3, 1, struct.pack(">H", 6))])
    return _encode(arr, "JPEG", quality=85, exif=exif)


def exif_offset_loop(arr: np.ndarray) -> bytes:
    """EXIF whose next-IFD offset points back at itself (a loop) and whose ExifIFD pointer is out of range."""
    ifd = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 2)
    ifd += (
        struct.pack(">HHII", 0x8769, 4, 1, 0x7FFFFFF0) + struct.pack(">HHI", 0x0112, 3, 1) + b"\x00\x03\0\0"
    )
    ifd += struct.pack(">I", 8)
    return _encode(arr, "JPEG", quality=85, exif=b"Exif\x00\x00" + ifd)


def truncated(data: bytes, frac: float = 0.5) -> bytes:
    return data[: int(len(data) * frac)]


# -- MP4 boxes ---------------------------------------------------------------------------------------


def _find_box(data: bytes, kind: bytes) -> int:
    i = data.find(kind)
    if i < 4:
        raise ValueError(f"no {kind!r} box")
    return i - 4


def mp4_set_count(data: bytes, box: bytes, value: int) -> bytes:
    """Set the entry count of a full box (stts, stsz, ...) — the field after version/flags."""
    at = _find_box(data, box) + 12 if box != b"stsz" else _find_box(data, box) + 16
    return data[:at] + value.to_bytes(4, "big") + data[at + 4 :]


def mp4_box_size(data: bytes, box: bytes, size: int) -> bytes:
    at = _find_box(data, box)
    return data[:at] + size.to_bytes(4, "big") + data[at + 4 :]


def mp4_largesize(data: bytes, box: bytes, largesize: int) -> bytes:
    """size = 1 and a 64-bit largesize (here: absurdly large) after the type."""
    at = _find_box(data, box)
    old = int.from_bytes(data[at : at + 4], "big")
    return data[:at] + (1).to_bytes(4, "big") + box + largesize.to_bytes(8, "big") + data[at + 8 : at + old]


def mp4_nested(depth: int = 2000) -> bytes:
    """ftyp, then `depth` moov boxes each holding the next (recursive containers)."""
    ftyp = struct.pack(">I", 20) + b"ftypisom" + b"\0\0\2\0" + b"isom"
    inner = b""
    for _ in range(depth):
        inner = struct.pack(">I", 8 + len(inner)) + b"moov" + inner
    return ftyp + inner


def mp4_heic_brand() -> bytes:
    return struct.pack(">I", 24) + b"ftypheic" + b"\0\0\0\0" + b"mif1heic" + struct.pack(">I", 8) + b"mdat"


@cache
def small_videos(folder: Path) -> dict[str, bytes]:
    from gateway.video.testing import make_test_video

    segs = [("coffee", 0.0, 0.6, None), ("gray", 0.6, 1.0, None)]
    mp4 = make_test_video(folder / "ok.mp4", segs, fps=10, size=(96, 64))
    webm = make_test_video(folder / "ok.webm", segs, fps=10, size=(96, 64), container="webm")
    return {"mp4": mp4.read_bytes(), "webm": webm.read_bytes()}


NAMES = (
    "empty",
    "text",
    "html",
    "png-pixel-bomb",
    "png-real-bomb",
    "png-ztxt-bomb",
    "png-iccp-bomb",
    "webp-canvas-bomb",
    "webp-lossless-bomb",
    "gif-bomb",
    "gif-real",
    "jpeg-truncated",
    "png-truncated",
    "webp-truncated",
    "jpeg-header-only",
    "jpeg-zip-polyglot",
    "png-html-polyglot",
    "jpeg-huge-exif",
    "jpeg-exif-type-confusion",
    "jpeg-exif-offset-loop",
    "mp4-ok",
    "webm-ok",
    "mp4-truncated",
    "mp4-ftyp-only",
    "mp4-moov-size-huge",
    "mp4-moov-size-tiny",
    "mp4-moov-size-zero",
    "mp4-mdat-largesize",
    "mp4-stsz-count-huge",
    "mp4-stsc-count-huge",
    "mp4-stts-count-huge",
    "mp4-recursive-moov",
    "mp4-heic-brand",
    "mp4-html-tail",
)


def build(folder: Path, coffee: np.ndarray, astronaut: np.ndarray) -> list[Item]:
    small = np.ascontiguousarray(coffee[::4, ::4])
    face = np.ascontiguousarray(astronaut[::2, ::2])
    jpg, png, webp = _encode(small, "JPEG", quality=85), _encode(small, "PNG"), _encode(small, "WEBP")
    vids = small_videos(folder)
    mp4 = vids["mp4"]
    items = [
        Item("empty", b"", "other"),
        Item("text", b"this is not an image at all, whatever the file name says", "other"),
        Item("html", HTML, "other"),
        Item("png-pixel-bomb", png_pixel_bomb(), "image", pre_decode=True),
        Item("png-real-bomb", png_real_bomb(), "image", pre_decode=True),
        Item("png-ztxt-bomb", png_text_bomb(small), "image"),
        Item("png-iccp-bomb", png_iccp_bomb(small), "image"),
        Item("webp-canvas-bomb", webp_canvas_bomb(), "image", pre_decode=True),
        Item("webp-lossless-bomb", webp_lossless_bomb(), "image", pre_decode=True),
        Item("gif-bomb", gif_bomb(), "image", pre_decode=True),
        Item("gif-real", _encode(small, "GIF"), "image", pre_decode=True),
        Item("jpeg-truncated", truncated(jpg), "image"),
        Item("png-truncated", truncated(png), "image"),
        Item("webp-truncated", truncated(webp), "image"),
        Item("jpeg-header-only", jpg[:20], "image"),
        Item("jpeg-zip-polyglot", jpeg_zip_polyglot(face), "image", payload=b"PK\x03\x04"),
        Item(
            "png-html-polyglot", png_html_polyglot(np.ascontiguousarray(coffee)), "image", payload=b"<script>"
        ),
        Item("jpeg-huge-exif", jpeg_huge_exif(small), "image"),
        Item("jpeg-exif-type-confusion", jpeg_exif_type_confusion(small), "image"),
        Item("jpeg-exif-offset-loop", exif_offset_loop(small), "image"),
        Item("mp4-ok", mp4, "video"),
        Item("webm-ok", vids["webm"], "video"),
        Item("mp4-truncated", truncated(mp4, 0.6), "video"),
        Item("mp4-ftyp-only", mp4[:32], "video"),
        Item("mp4-moov-size-huge", mp4_box_size(mp4, b"moov", 0xFFFFFFFF), "video"),
        Item("mp4-moov-size-tiny", mp4_box_size(mp4, b"moov", 4), "video"),
        Item("mp4-moov-size-zero", mp4_box_size(mp4, b"moov", 0), "video"),
        Item("mp4-mdat-largesize", mp4_largesize(mp4, b"mdat", 0xFFFFFFFFFFFFFFF0), "video"),
        Item("mp4-stsz-count-huge", mp4_set_count(mp4, b"stsz", 0x7FFFFFFF), "video"),
        Item("mp4-stsc-count-huge", mp4_set_count(mp4, b"stsc", 0x7FFFFFFF), "video"),
        Item("mp4-stts-count-huge", mp4_set_count(mp4, b"stts", 0x7FFFFFFF), "video"),
        Item("mp4-recursive-moov", mp4_nested(), "video"),
        Item("mp4-heic-brand", mp4_heic_brand(), "video"),
        Item("mp4-html-tail", mp4 + HTML, "video"),
    ]
    assert tuple(i.name for i in items) == NAMES
    return items
