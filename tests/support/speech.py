"""Why: voice tests need real speech, and the repository must never hold personal recordings;
espeak-ng (Debian package, installed by scripts/install.sh) renders synthetic voices offline at
test time. Its formant voices differ in pitch, formants and accent, which a speaker encoder hears
as different speakers: voice "A" (Scottish English, female variant 2) and voice "B" (US English,
male variant 3, lower pitch) are far apart for Resemblyzer (cosine well under 0.75), while two
sentences of one voice stay close (over 0.9).

`speech(text, voice)` returns mono float32 samples at 16 kHz (the voice family's rate);
`speech_wav(...)` the same as 16-bit WAV bytes at espeak's own 22.05 kHz (for intake tests).
A missing espeak-ng is an error that names the install script, not a skip: CI must run these."""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import wave

import numpy as np

VOICE_A = ("en-gb-scotland+f2", 50)
VOICE_B = ("en-us+m3", 30)
SENTENCES = (
    "Please call Stella and ask her to bring these things with her from the store.",
    "The quick brown fox jumps over the lazy dog and runs back into the quiet forest.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother.",
    "We also need a small plastic snake and a big toy frog for the kids at the party tonight.",
    "She can scoop these things into three red bags, and we will go meet her on Wednesday at the station.",
)


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed: run scripts/install.sh (apt-get install espeak-ng)")
    return exe


@functools.lru_cache(maxsize=64)
def speech_wav(text: str, voice: tuple[str, int] = VOICE_A, speed: int = 160) -> bytes:
    """espeak-ng's WAV (16-bit mono, 22050 Hz) of `text` spoken by `voice` = (name, pitch 0..99)."""
    name, pitch = voice
    out = subprocess.run(  # noqa: S603 - a fixed executable and argument list, no shell
        [_espeak(), "-v", name, "-p", str(pitch), "-s", str(speed), "--stdout", text],
        check=True, capture_output=True, timeout=60,
    ).stdout
    # espeak-ng writes a streaming header (sizes 0x7fffffff); rewrite it so every reader accepts it.
    with wave.open(io.BytesIO(out)) as src:
        rate, frames = src.getframerate(), src.readframes(src.getnframes())
    buf = io.BytesIO()
    with wave.open(buf, "wb") as dst:
        dst.setnchannels(1)
        dst.setsampwidth(2)
        dst.setframerate(rate)
        dst.writeframes(frames)
    return buf.getvalue()


def speech(text: str, voice: tuple[str, int] = VOICE_A, speed: int = 160) -> np.ndarray:
    """Mono float32 samples at 16 kHz."""
    from scipy.signal import resample_poly

    with wave.open(io.BytesIO(speech_wav(text, voice, speed))) as src:
        rate = src.getframerate()
        pcm = np.frombuffer(src.readframes(src.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    if rate == 16000:
        return pcm
    g = np.gcd(16000, rate)
    return resample_poly(pcm, 16000 // g, rate // g).astype(np.float32)


def video_with_speech(path: str, samples: np.ndarray, *, size: tuple[int, int] = (160, 120), fps: int = 10) -> str:
    """An H.264 + AAC MP4 of grey frames whose soundtrack is `samples` (mono float32, 16 kHz)."""
    from typing import Any, cast

    import av

    seconds = len(samples) / 16000
    with av.open(path, "w", format="mp4") as out:
        vs = cast(Any, out.add_stream("libx264", rate=fps))
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        vs.options = {"preset": "ultrafast"}
        aus = cast(Any, out.add_stream("aac", rate=16000, layout="mono"))
        frame = np.full((size[1], size[0], 3), 90, np.uint8)
        for i in range(int(seconds * fps)):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            for packet in vs.encode(vf):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
        n = aus.codec_context.frame_size or 1024
        pts = 0
        for start in range(0, len(samples), n):
            chunk = samples[start:start + n]
            if len(chunk) < n:
                chunk = np.pad(chunk, (0, n - len(chunk)))
            af = av.AudioFrame.from_ndarray(chunk[None, :].astype(np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, pts
            pts += n
            for packet in aus.encode(af):
                out.mux(packet)
        for packet in aus.encode(None):
            out.mux(packet)
    return path
