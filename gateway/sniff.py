"""Why: what a file really is (image, video or audio container) is read from its first bytes, never from
its name or declared type. The gateway's decoders need that, and so does the CLI before it uploads a file
(`consentgate check|release` send videos and audio as jobs) — which must start without numpy, Pillow or
PyAV (#22.6). So the sniffers live here, on the standard library alone; `gateway.media` and
`gateway.audio.intake` re-export them."""

from __future__ import annotations

from typing import Literal

__all__ = ["AudioMime", "sniff", "sniff_audio"]

AudioMime = Literal["audio/wav", "audio/flac", "audio/mpeg", "audio/ogg", "audio/mp4"]
_M4A_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "})


def sniff(data: bytes) -> str | None:
    """The media type the bytes really are, or None. Names and client-declared types are ignored."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        brand = data[8:12]
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm" if b"webm" in data[:64] else "video/x-matroska"
    return None


def sniff_audio(data: bytes) -> AudioMime | None:
    """The audio container the bytes really are, or None. The first 64 bytes are plenty, except
    after an ID3v2 tag (MP3, and FLAC as C2PA signs it): then what follows the tag decides."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data[:4] == b"fLaC":
        return "audio/flac"
    if data[:4] == b"OggS":
        return "audio/ogg"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        size = int.from_bytes(data[:4], "big")
        brands = {data[8:12]} | {data[i:i + 4] for i in range(16, min(size, len(data)) - 3, 4)}
        return "audio/mp4" if data[8:12] in _M4A_BRANDS or (brands & _M4A_BRANDS) else None
    if data[:3] == b"ID3":
        if len(data) >= 10:
            size = (data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F)
            after = data[10 + size + (10 if data[5] & 0x10 else 0):][:4]
            if after == b"fLaC":
                return "audio/flac"
        return "audio/mpeg"
    if len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0 and (data[1] & 0x06) == 0x02:
        return "audio/mpeg"  # an MPEG audio frame header, Layer III
    return None
