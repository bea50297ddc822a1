"""Why: the reference upstream answers OpenAI's `POST /v1/audio/speech` too, so the gateway's
`openai-audio` route kind can be tested end to end without a model server: espeak-ng (Debian,
installed by scripts/install.sh) speaks the input offline. `voice` names an espeak-ng voice
(`en-gb-scotland+f2`, optionally `NAME@PITCH`); OpenAI's names map to fixed espeak voices."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np

OPENAI_VOICES = {"alloy": "en-us+m3@30", "echo": "en-gb+m2@40", "fable": "en-gb-scotland+f2@50",
                 "onyx": "en-us+m1@20", "nova": "en-us+f3@60", "shimmer": "en-gb+f4@70"}
FORMATS = {"wav": ("wav", "pcm_s16le", "audio/wav"), "flac": ("flac", "flac", "audio/flac"),
           "mp3": ("mp3", "libmp3lame", "audio/mpeg"), "opus": ("ogg", "libopus", "audio/ogg"),
           "aac": ("ipod", "aac", "audio/mp4")}


def speak(text: str, voice: str, response_format: str = "mp3") -> tuple[bytes, str]:
    """(audio bytes, content type) of `text` spoken by `voice` in `response_format`."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (scripts/install.sh installs it)")
    name, _, pitch = OPENAI_VOICES.get(voice, voice).partition("@")
    raw = subprocess.run([exe, "-v", name, "-p", pitch or "50", "--stdout", text],  # noqa: S603
                         check=True, capture_output=True, timeout=60).stdout
    with wave.open(io.BytesIO(raw)) as src:
        rate = src.getframerate()
        pcm = np.frombuffer(src.readframes(src.getnframes()), "<i2").astype(np.float32) / 32768
    return _encode(pcm, rate, response_format)


def _encode(samples: np.ndarray, rate: int, response_format: str) -> tuple[bytes, str]:
    import av

    fmt, codec, mime = FORMATS[response_format]
    out_rate = 48_000 if codec == "libopus" else rate
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=out_rate, layout="mono")  # type: ignore[call-overload]
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
        frame.sample_rate = rate
        fifo = av.AudioFifo()
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=out_rate)
        for converted in resampler.resample(frame) + resampler.resample(None):
            fifo.write(converted)
        size = stream.codec_context.frame_size or 1024
        while fifo.samples:
            chunk = fifo.read(min(size, fifo.samples) if fifo.samples < size else size)
            for packet in stream.encode(chunk):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue(), mime
