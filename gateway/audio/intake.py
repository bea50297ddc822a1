"""Why: every audio upload is untrusted bytes handed to FFmpeg. Intake decides, before any
model runs, whether we accept it: the container sniffed from the bytes (never the file name or
the client's content type), the codec, and hard limits on bytes, duration, channels and sample
rate, read from the headers *before* decoding and enforced again while decoding (headers lie).
Refusals are the gateway's typed errors: 415 unsupported (`unsupported_audio`), 413 too large
(`audio_too_large`, also for absurd container tables that make FFmpeg run out of memory), 400
corrupt (`corrupt_audio`), 400 empty (`empty_media`). Never a 500, never a hang.

Accepted: WAV (PCM), FLAC, MP3, Ogg (Opus, Vorbis, FLAC), M4A (AAC, ALAC). The soundtrack of a
video goes through the same decoder and limits (`decode_soundtrack`). Output: mono float32 at
16 kHz (`VOICE_RATE`, what the voice family hears): resampled by FFmpeg, channels averaged.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from gateway.errors import BadInput, TooLarge, UnsupportedMedia
from gateway.sniff import AudioMime, sniff_audio

__all__ = [
    "AUDIO_TYPES",
    "VOICE_RATE",
    "AudioLimits",
    "AudioMime",
    "AudioProbe",
    "DecodedAudio",
    "decode_audio",
    "decode_native",
    "decode_soundtrack",
    "probe_audio",
    "sniff_audio",
]

AUDIO_TYPES: tuple[AudioMime, ...] = ("audio/wav", "audio/flac", "audio/mpeg", "audio/ogg", "audio/mp4")
VOICE_RATE = 16_000

_DEMUXER: dict[str, str] = {"audio/wav": "wav", "audio/flac": "flac", "audio/mpeg": "mp3", "audio/ogg": "ogg",
                            "audio/mp4": "mov"}
ACCEPTED_CODECS: dict[str, frozenset[str]] = {
    "audio/wav": frozenset({"pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_f64le", "pcm_u8",
                            "pcm_alaw", "pcm_mulaw"}),
    "audio/flac": frozenset({"flac"}),
    "audio/mpeg": frozenset({"mp3", "mp3float"}),
    "audio/ogg": frozenset({"opus", "vorbis", "flac"}),
    "audio/mp4": frozenset({"aac", "alac"}),
}


@dataclass(frozen=True)
class AudioLimits:
    """Hard limits, checked on the headers before decoding and on the decoded samples."""

    max_bytes: int = 100 * 1024 * 1024
    max_seconds: float = 600.0
    max_channels: int = 8
    max_sample_rate: int = 192_000
    min_sample_rate: int = 8_000


@dataclass(frozen=True)
class DecodedAudio:
    """Audio ready for the voice models: `samples` is mono float32 at 16 kHz."""

    sha256: str
    mime: str
    codec: str
    sample_rate: int
    channels: int
    duration_s: float
    samples: np.ndarray

    def describe(self) -> dict[str, object]:
        return {"sha256": self.sha256, "type": self.mime, "duration": round(self.duration_s, 3),
                "sample_rate": self.sample_rate, "channels": self.channels}




@contextmanager
def _decode_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (BadInput, TooLarge, UnsupportedMedia):
        raise
    except MemoryError as exc:
        raise TooLarge(f"the {what} declares tables too large to decode", code="audio_too_large") from exc
    except Exception as exc:  # malformed input must never surface as another exception
        reason = getattr(exc, "strerror", None) or type(exc).__name__  # no server paths in messages
        raise BadInput(f"could not decode the {what}: {reason}", code="corrupt_audio") from exc


def decode_audio(data: bytes, limits: AudioLimits | None = None, *, index: int = 0) -> DecodedAudio:
    """Decode one uploaded audio file or raise a 4xx error that says what is wrong with it."""
    limits = limits or AudioLimits()
    where = f"media part {index}"
    if len(data) == 0:
        raise BadInput(f"{where} is empty (0 bytes)", code="empty_media")
    if len(data) > limits.max_bytes:
        raise TooLarge(f"{where} is {len(data)} bytes; the limit is {limits.max_bytes}", code="audio_too_large")
    mime = sniff_audio(data)
    if mime is None:
        raise UnsupportedMedia(f"{where} is not a WAV, FLAC, MP3, Ogg or M4A audio file",
                               code="unsupported_audio")
    with _decode_errors(f"audio in {where}"):
        container = av.open(io.BytesIO(data), "r", format=_DEMUXER[mime], metadata_errors="ignore")
    with container:
        codec, rate, channels, samples = _decode(container, mime, limits, f"audio in {where}")
    return DecodedAudio(hashlib.sha256(data).hexdigest(), mime, codec, rate, channels,
                        len(samples) / VOICE_RATE, samples)


def decode_native(data: bytes, mime: str) -> tuple[np.ndarray, int]:
    """Every channel at the file's own rate, (channels, n) float32: what a release marks and
    re-encodes. Call it only on bytes `decode_audio` accepted (the limits were checked there)."""
    with _decode_errors("audio"), av.open(io.BytesIO(data), "r", format=_DEMUXER[mime],
                                          metadata_errors="ignore") as container:
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate)
        resampler = av.AudioResampler(format="fltp", rate=rate)
        chunks = [out.to_ndarray() for frame in container.decode(stream) for out in resampler.resample(frame)]
        chunks += [out.to_ndarray() for out in resampler.resample(None)]
    if not chunks:
        raise BadInput("the audio holds no decodable samples", code="corrupt_audio")
    return np.clip(np.concatenate(chunks, axis=1), -1.0, 1.0).astype(np.float32), rate


def decode_soundtrack(path: str | os.PathLike[str], limits: AudioLimits | None = None) -> DecodedAudio | None:
    """The first audio track of a video file (already accepted by video intake) through the same
    checks and decoder; None when the video has no audio track."""
    limits = limits or AudioLimits()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    with _decode_errors("soundtrack"):
        container = av.open(os.fspath(path), "r", metadata_errors="ignore")
    with container:
        if not container.streams.audio:
            return None
        codec, rate, channels, samples = _decode(container, None, limits, "soundtrack")
    return DecodedAudio(h.hexdigest(), "soundtrack", codec, rate, channels, len(samples) / VOICE_RATE, samples)


def _header(container: Any, mime: str | None, limits: AudioLimits, what: str) -> tuple[Any, str, int, int,
                                                                                    float | None]:
    """The first audio stream, its codec, rate and channels, and its declared duration, checked
    against `limits` before anything is decoded."""
    with _decode_errors(what):
        if not container.streams.audio:
            raise BadInput(f"the {what} holds no audio stream", code="corrupt_audio")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        codec = ctx.codec.name
        rate, channels = int(ctx.sample_rate or 0), int(ctx.channels or 0)
    if mime is not None and codec not in ACCEPTED_CODECS[mime]:
        raise UnsupportedMedia(f"the {what} uses codec {codec!r}, not one taken in {mime}", code="unsupported_audio")
    if not limits.min_sample_rate <= rate <= limits.max_sample_rate:
        raise UnsupportedMedia(
            f"the {what} has sample rate {rate} Hz; accepted {limits.min_sample_rate}..{limits.max_sample_rate}",
            code="unsupported_audio")
    if not 1 <= channels <= limits.max_channels:
        raise TooLarge(f"the {what} has {channels} channels; the limit is {limits.max_channels}",
                       code="audio_too_large")
    declared = _declared_seconds(container, stream)
    if declared is not None and declared > limits.max_seconds:
        raise TooLarge(f"the {what} lasts {declared:.1f} s; the limit is {limits.max_seconds:g} s",
                       code="audio_too_large")
    return stream, codec, rate, channels, declared


@dataclass(frozen=True)
class AudioProbe:
    """What `probe_audio` read from an audio file's headers (and its first second of samples)."""

    mime: AudioMime
    codec: str
    sample_rate: int
    channels: int
    declared_s: float | None


def probe_audio(path: str | os.PathLike[str], limits: AudioLimits | None = None) -> AudioProbe:
    """Check an uploaded audio file without decoding all of it (an audio job's intake, answered
    before the job is queued): bytes, container, codec, sample rate, channels and declared duration
    against `limits`, and that its first second decodes. The job decodes it whole, under the same
    limits, and fails with the same codes if a later part is broken."""
    limits = limits or AudioLimits()
    size = os.path.getsize(path)
    if size == 0:
        raise BadInput("the upload is empty (0 bytes)", code="empty_media")
    if size > limits.max_bytes:
        raise TooLarge(f"the audio is {size} bytes; the limit is {limits.max_bytes}", code="audio_too_large")
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    mime = sniff_audio(head)
    if mime is None:
        raise UnsupportedMedia("the upload is not a WAV, FLAC, MP3, Ogg or M4A audio file", code="unsupported_audio")
    with _decode_errors("audio"):
        container = av.open(os.fspath(path), "r", format=_DEMUXER[mime], metadata_errors="ignore")
    with container:
        stream, codec, rate, channels, declared = _header(container, mime, limits, "audio")
        got = 0
        with _decode_errors("audio"):
            for frame in container.decode(stream):
                got += frame.samples
                if got >= rate:
                    break
    if got == 0:
        raise BadInput("the audio holds no decodable samples", code="corrupt_audio")
    return AudioProbe(mime, codec, rate, channels, declared)


def _decode(container: Any, mime: str | None, limits: AudioLimits, what: str) -> tuple[str, int, int, np.ndarray]:
    stream, codec, rate, channels, _ = _header(container, mime, limits, what)
    max_samples = int(limits.max_seconds * VOICE_RATE) + VOICE_RATE // 4  # slack for resampler rounding
    chunks: list[np.ndarray] = []
    total = 0
    with _decode_errors(what):
        resampler = av.AudioResampler(format="fltp", rate=VOICE_RATE)  # keeps the channels; averaged below
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().mean(axis=0)
                chunks.append(chunk)
                total += len(chunk)
            if total > max_samples:
                raise TooLarge(f"the {what} lasts longer than {limits.max_seconds:g} s", code="audio_too_large")
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().mean(axis=0))
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if len(samples) == 0:
        raise BadInput(f"the {what} holds no decodable samples", code="corrupt_audio")
    if not np.isfinite(samples).all():
        raise BadInput(f"the {what} decodes to non-finite samples", code="corrupt_audio")
    return codec, rate, channels, np.clip(samples, -1.0, 1.0)


def _declared_seconds(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000
    return None
