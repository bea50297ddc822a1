"""Why: released audio must lead back to its decision after the things that happen to audio on its
way (issue #18 point 5): MP3 re-encoding at 128 kbps and a ±6 dB volume change; an unmarked file
must never yield an id. Speech: espeak-ng at test time, at its own 22.05 kHz rate."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from gateway.audio.encode import encode_audio
from gateway.audio.intake import decode_audio
from gateway.audio.watermark import detect, mark_samples, soft_bits
from gateway.provenance.payload import DWT_PAYLOAD
from tests.support.speech import SENTENCES, VOICE_A, VOICE_B, speech_wav

WM_ID = 0x9ABCDEF012


def _native(voice: tuple[str, int]) -> tuple[int, np.ndarray]:
    out = []
    rate = 22050
    for i in (0, 2):
        with wave.open(io.BytesIO(speech_wav(SENTENCES[i], voice))) as src:
            rate = src.getframerate()
            out.append(np.frombuffer(src.readframes(src.getnframes()), "<i2").astype(np.float32) / 32768)
    return rate, np.concatenate(out)


@pytest.fixture(scope="module")
def marked() -> tuple[int, np.ndarray, np.ndarray]:
    rate, x = _native(VOICE_A)
    mono16 = decode_audio(encode_audio(x, rate, "audio/wav")).samples
    return rate, x, mark_samples(x[None, :], rate, mono16, WM_ID)[0]


@pytest.mark.parametrize(
    ("name", "transform"),
    [
        ("wav", lambda m, r: encode_audio(m, r, "audio/wav")),
        ("mp3 128k", lambda m, r: encode_audio(m, r, "audio/mpeg", bitrate=128_000)),
        ("+6 dB", lambda m, r: encode_audio(np.clip(m * 2.0, -1, 1), r, "audio/wav")),
        ("-6 dB then mp3 128k", lambda m, r: encode_audio(m * 0.5, r, "audio/mpeg", bitrate=128_000)),
        ("+6 dB then mp3 128k", lambda m, r: encode_audio(np.clip(m * 2.0, -1, 1), r, "audio/mpeg", bitrate=128_000)),
        ("stereo AAC", lambda m, r: encode_audio(m, r, "audio/mp4", channels=2, bitrate=128_000)),
    ],
)
def test_the_payload_survives(marked: tuple[int, np.ndarray, np.ndarray], name: str, transform: object) -> None:
    rate, _x, audio = marked
    copy = decode_audio(transform(audio, rate)).samples  # type: ignore[operator]
    found = detect(copy)
    assert found is not None and found.payload.wm_id == WM_ID, name
    soft, tiles = soft_bits(copy, found.offset_samples)  # where the encoder's delay put the grid
    bit_accuracy = float(np.mean((soft > 0.5) == DWT_PAYLOAD.encode(WM_ID)))
    assert bit_accuracy >= 0.95 and tiles > 100, name


def test_the_mark_is_quiet(marked: tuple[int, np.ndarray, np.ndarray]) -> None:
    _rate, x, audio = marked
    snr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((audio - x).astype(np.float64) ** 2))
    assert snr >= 20.0


def test_unmarked_audio_yields_no_id() -> None:
    for voice in (VOICE_A, VOICE_B):
        rate, x = _native(voice)
        for mime in ("audio/wav", "audio/mpeg"):
            assert detect(decode_audio(encode_audio(x, rate, mime)).samples) is None
    rng = np.random.default_rng(5)
    noise = (rng.standard_normal(16000 * 8) * 0.1).astype(np.float32)
    assert detect(noise) is None
    assert detect(np.zeros(16000 * 3, np.float32)) is None
