"""Why: every video the gateway touches is untrusted bytes handed to FFmpeg. Intake decides,
before any model runs, whether we accept it at all: the container sniffed from the bytes (not
the file name or the client's content type), the codec, and hard limits on bytes, duration,
resolution and frame count. Every refusal is a `VideoError` carrying the HTTP status the API
maps it to (413 too large, 415 unsupported, 400 corrupt) — never a crash, never a hang.

Accepted: MP4 and MOV with H.264 or H.265 video; WebM with VP8, VP9 or AV1 video. Audio is
optional and any codec FFmpeg decodes (the output is re-encoded to AAC when MP4 cannot carry
it as is; see `transcode`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np

from gateway.video.errors import VideoError

__all__ = [
    "ACCEPTED_CODECS",
    "VideoError",
    "VideoInfo",
    "VideoLimits",
    "VideoMime",
    "decode_errors",
    "luma_frames",
    "open_video",
    "probe_video",
    "sniff_video",
]

VideoMime = Literal["video/mp4", "video/quicktime", "video/webm"]

ACCEPTED_CODECS: dict[str, frozenset[str]] = {
    "video/mp4": frozenset({"h264", "hevc"}),
    "video/quicktime": frozenset({"h264", "hevc"}),
    "video/webm": frozenset({"vp8", "vp9", "av1"}),
}
_DEMUXER = {"video/mp4": "mov", "video/quicktime": "mov", "video/webm": "matroska"}

_MP4_BRANDS = frozenset({
    b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9",
    b"mp41", b"mp42", b"avc1", b"hvc1", b"hev1", b"M4V ", b"M4VH", b"M4VP", b"dash", b"mmp4",
    b"MSNV", b"XAVC", b"f4v ",
})
_NOT_VIDEO_BRANDS = frozenset({  # still images and audio-only in ISO-BMFF
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis",
    b"M4A ", b"M4B ", b"M4P ", b"crx ", b"jp2 ", b"jpm ", b"jpx ",
})
_QT_FIRST_ATOMS = frozenset({b"moov", b"wide", b"pnot", b"mdat"})


@dataclass(frozen=True)
class VideoLimits:
    """Hard limits. Resolution limits are orientation-agnostic: the long side is compared with
    max(max_width, max_height) and the short side with the smaller one, so 1080x1920 portrait
    passes wherever 1920x1080 does."""

    max_bytes: int = 512 * 1024 * 1024
    max_seconds: float = 600.0
    max_width: int = 3840
    max_height: int = 2160
    max_frames: int = 36_000


@dataclass(frozen=True)
class VideoInfo:
    mime: VideoMime
    width: int
    height: int
    fps: float
    duration_s: float
    frame_count: int
    video_codec: str
    audio_codec: str | None


def sniff_video(data: bytes) -> VideoMime | None:
    """The container type from the first bytes (4 KiB is plenty), or None if not one we take."""
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return _sniff_ftyp(data)
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm" if _ebml_doctype(data) == b"webm" else None
    if len(data) >= 8 and data[4:8] in _QT_FIRST_ATOMS and int.from_bytes(data[:4], "big") >= 8:
        return "video/quicktime"
    return None


def _sniff_ftyp(data: bytes) -> VideoMime | None:
    size = int.from_bytes(data[:4], "big")
    if size < 16:
        return None
    major = data[8:12]
    compatible = {data[i:i + 4] for i in range(16, min(size, len(data)) - 3, 4)}
    if major == b"qt  ":
        return "video/quicktime"
    if major in _MP4_BRANDS:
        return "video/mp4"
    if major in _NOT_VIDEO_BRANDS:
        return None
    if compatible & _MP4_BRANDS:
        return "video/mp4"
    if b"qt  " in compatible:
        return "video/quicktime"
    return None


def _read_vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int] | None:
    """An EBML variable-length integer at `pos` -> (value, next position), None if malformed."""
    if pos >= len(data):
        return None
    first = data[pos]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8 or pos + length > len(data):
        return None
    value = first if keep_marker else first & (0xFF >> length)
    for b in data[pos + 1:pos + length]:
        value = (value << 8) | b
    return value, pos + length


def _ebml_doctype(data: bytes) -> bytes | None:
    header = _read_vint(data, 4, keep_marker=False)
    if header is None:
        return None
    size, pos = header
    end = min(len(data), pos + size)
    while pos < end:
        elem = _read_vint(data, pos, keep_marker=True)
        if elem is None:
            return None
        elem_id, pos = elem
        length = _read_vint(data, pos, keep_marker=False)
        if length is None:
            return None
        elem_size, pos = length
        if elem_id == 0x4282:  # DocType
            return data[pos:pos + elem_size].rstrip(b"\x00")
        pos += elem_size
    return None


@contextmanager
def decode_errors(what: str = "video") -> Iterator[None]:
    """Turn anything FFmpeg (or PyAV around it) raises on bad input into VideoError 400."""
    try:
        yield
    except VideoError:
        raise
    except MemoryError as exc:
        # FFmpeg's ENOMEM (av.error.MemoryError) on absurd sizes in the container (e.g. a huge stts
        # count) is bad input, not an exhausted server: refuse it as too large.
        raise VideoError(413, "video_too_large", f"the {what} declares tables too large to decode") from exc
    except Exception as exc:  # malformed input must never surface as another exception
        reason = getattr(exc, "strerror", None) or type(exc).__name__  # no server paths in messages
        raise VideoError(400, "corrupt_video", f"could not decode the {what}: {reason}") from exc


def open_video(path: str | os.PathLike[str], mime: VideoMime | None = None) -> av.container.InputContainer:
    """Open an input with the demuxer for its sniffed type (FFmpeg never guesses other formats)."""
    if mime is None:
        with open(path, "rb") as fh:
            mime = sniff_video(fh.read(4096))
        if mime is None:
            raise VideoError(415, "unsupported_media_type", "not an MP4, MOV or WebM video")
    with decode_errors():
        return av.open(os.fspath(path), "r", format=_DEMUXER[mime], metadata_errors="ignore")


def _too_large(what: str) -> VideoError:
    return VideoError(413, "video_too_large", what)


def probe_video(path: str | os.PathLike[str], limits: VideoLimits | None = None) -> VideoInfo:
    """Check a video file against `limits` and describe it. Raises VideoError on any refusal.

    Reads the container header, decodes the first frame, and demuxes (without decoding) every
    video packet to count frames exactly and catch truncation.
    """
    limits = limits or VideoLimits()
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise VideoError(400, "corrupt_video", f"cannot read the video: {exc.strerror}") from exc
    if size > limits.max_bytes:
        raise _too_large(f"the video is {size} bytes; the limit is {limits.max_bytes}")
    with open(path, "rb") as fh:
        mime = sniff_video(fh.read(4096))
    if mime is None:
        raise VideoError(415, "unsupported_media_type", "not an MP4, MOV or WebM video")
    with decode_errors(), open_video(path, mime) as container:
        info = _describe(container, mime, limits)
        _decode_first_frame(container)
    with decode_errors(), open_video(path, mime) as container:
        frames, end_s = _count_packets(container, limits)
    if frames == 0:
        raise VideoError(400, "corrupt_video", "the video stream holds no frames")
    if info.frame_count and frames < info.frame_count:
        raise VideoError(400, "corrupt_video",
                         f"truncated: the header lists {info.frame_count} frames, the file holds {frames}")
    duration = info.duration_s if info.duration_s > 0 else end_s
    if duration > limits.max_seconds:
        raise _too_large(f"the video lasts {duration:.1f} s; the limit is {limits.max_seconds} s")
    return VideoInfo(mime=mime, width=info.width, height=info.height, fps=info.fps,
                     duration_s=duration, frame_count=frames, video_codec=info.video_codec,
                     audio_codec=info.audio_codec)


def _describe(container: av.container.InputContainer, mime: VideoMime, limits: VideoLimits) -> VideoInfo:
    if not container.streams.video:
        raise VideoError(415, "unsupported_media_type", "the file has no video stream")
    stream = container.streams.video[0]
    codec = stream.codec_context.codec.canonical_name
    if codec not in ACCEPTED_CODECS[mime]:
        accepted = ", ".join(sorted(ACCEPTED_CODECS[mime]))
        raise VideoError(415, "unsupported_codec", f"{mime} with {codec} video; accepted: {accepted}")
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise VideoError(400, "corrupt_video", "the video stream has no frame size")
    long_limit = max(limits.max_width, limits.max_height)
    short_limit = min(limits.max_width, limits.max_height)
    if max(width, height) > long_limit or min(width, height) > short_limit:
        raise _too_large(f"{width}x{height} exceeds the limit {limits.max_width}x{limits.max_height}")
    rate = stream.average_rate or stream.guessed_rate
    if not rate or rate <= 0 or rate > 1000:
        raise VideoError(400, "corrupt_video", "the video stream has no usable frame rate")
    fps = float(rate)
    duration = 0.0
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1_000_000
    if duration > limits.max_seconds:
        raise _too_large(f"the video lasts {duration:.1f} s; the limit is {limits.max_seconds} s")
    header_frames = max(int(stream.frames or 0), 0)
    if header_frames > limits.max_frames:
        raise _too_large(f"the video has {header_frames} frames; the limit is {limits.max_frames}")
    audio = container.streams.audio[0].codec_context.codec.canonical_name if container.streams.audio else None
    return VideoInfo(mime=mime, width=width, height=height, fps=fps, duration_s=duration,
                     frame_count=header_frames, video_codec=codec, audio_codec=audio)


def _decode_first_frame(container: av.container.InputContainer) -> None:
    stream = container.streams.video[0]
    for packets, packet in enumerate(container.demux(stream)):
        for _frame in packet.decode():
            return
        if packets > 256:
            break
    raise VideoError(400, "corrupt_video", "no decodable frame at the start of the video")


def _count_packets(container: av.container.InputContainer, limits: VideoLimits) -> tuple[int, float]:
    """(video packets with data, end time in seconds of the last one)."""
    stream = container.streams.video[0]
    count = 0
    end = 0.0
    tb = stream.time_base
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        count += 1
        if count > limits.max_frames:
            raise _too_large(f"the video has more than {limits.max_frames} frames")
        if packet.pts is not None and tb is not None:
            end = max(end, float((packet.pts + (packet.duration or 0)) * tb))
    start = float(stream.start_time * tb) if stream.start_time is not None and tb is not None else 0.0
    return count, max(end - start, 0.0)


def luma_frames(path: str | os.PathLike[str], max_frames: int = 900) -> Iterable[np.ndarray]:
    """The Y planes of the first `max_frames` frames of a video (copies; 8-bit YUV read as is,
    other formats converted to grey): what the video marks' detectors read."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        frames = container.decode(stream)
        for _ in range(max_frames):
            with decode_errors():
                frame = next(frames, None)
            if frame is None:
                return
            if frame.format.name in ("yuv420p", "yuvj420p"):
                plane = frame.planes[0]
                y = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
                yield np.ascontiguousarray(y[: frame.height, : frame.width])
            else:
                yield frame.to_ndarray(format="gray")
