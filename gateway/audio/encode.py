"""Why: a released audio file goes back in the type it came in (issue #18 point 5), and tests,
fuzzing and benches need files of every accepted container made from known samples at run time
(nothing recorded ships in the repository). `encode_audio` writes them with the same FFmpeg
(PyAV) the gateway decodes with; `encode_channels` keeps every channel as it is."""

from __future__ import annotations

import io
from typing import cast

import av
import numpy as np

__all__ = ["FORMATS", "RELEASE_BITRATE", "encode_audio", "encode_channels"]

RELEASE_BITRATE = 192_000  # lossy releases (MP3, AAC, Opus): well above the mark's 128 kbps robustness

# mime -> (container format, codec, sample format the encoder takes)
FORMATS: dict[str, tuple[str, str, str]] = {
    "audio/wav": ("wav", "pcm_s16le", "s16"),
    "audio/flac": ("flac", "flac", "s16"),
    "audio/mpeg": ("mp3", "libmp3lame", "fltp"),
    "audio/ogg": ("ogg", "libopus", "flt"),
    "audio/mp4": ("ipod", "aac", "fltp"),
}


def encode_audio(samples: np.ndarray, rate: int, mime: str = "audio/wav", *, channels: int = 1,
                 bitrate: int | None = None) -> bytes:
    """Encode mono float32 `samples` (duplicated to `channels`) at `rate` Hz into `mime`.
    Opus only takes 48 kHz (and a few divisors): other rates are resampled by the encoder path."""
    data = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return encode_channels(np.repeat(data[None, :], channels, axis=0), rate, mime, bitrate=bitrate)


def encode_channels(planar: np.ndarray, rate: int, mime: str, *, bitrate: int | None = None) -> bytes:
    """Encode float32 `planar` samples (channels, n) at `rate` Hz into `mime`."""
    fmt, codec, sample_fmt = FORMATS[mime]
    channels = int(planar.shape[0])
    out_rate = 48_000 if codec == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000) else rate
    buf = io.BytesIO()
    layout = "mono" if channels == 1 else ("stereo" if channels == 2 else f"{channels}c")
    with av.open(buf, "w", format=fmt) as out:
        stream = cast(av.AudioStream, out.add_stream(codec, rate=out_rate, layout=layout))
        if bitrate is not None:
            stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(np.clip(planar, -1.0, 1.0), dtype=np.float32),
                                           format="fltp", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=sample_fmt, layout=layout, rate=out_rate)
        frame_size = stream.codec_context.frame_size or 1024
        fifo = av.AudioFifo()
        for converted in resampler.resample(frame) + resampler.resample(None):
            fifo.write(converted)
        while True:
            chunk = fifo.read(frame_size)
            if chunk is None:
                chunk = fifo.read(0) if fifo.samples else None
            if chunk is None:
                break
            for packet in stream.encode(chunk):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()
