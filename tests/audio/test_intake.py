"""Why: audio intake is the only place uploaded audio becomes samples; every accepted container
must decode to the same 16 kHz mono signal, and every refusal must be the right 4xx before any
model runs (issue #18 point 2)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from classifiers import fake_voice_samples
from gateway.audio.encode import FORMATS, encode_audio
from gateway.audio.intake import AudioLimits, decode_audio, decode_soundtrack, probe_audio, sniff_audio
from gateway.errors import BadInput, TooLarge, UnsupportedMedia


def _peak_hz(samples: np.ndarray, rate: int = 16_000) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum)) * rate / len(samples)


@pytest.mark.parametrize("mime", list(FORMATS))
@pytest.mark.parametrize("channels", [1, 2])
def test_every_container_decodes_to_the_same_signal(mime: str, channels: int) -> None:
    tone = fake_voice_samples(30, 3.0, rate=48_000)  # 500 Hz
    data = encode_audio(tone, 48_000, mime, channels=channels)
    assert sniff_audio(data) == mime
    audio = decode_audio(data)
    assert audio.mime == mime and audio.channels == channels and audio.sample_rate == 48_000
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.duration_s == pytest.approx(3.0, abs=0.1)
    assert _peak_hz(audio.samples) == pytest.approx(500.0, abs=2.0)
    # channels are averaged, not summed: the level stays that of one channel
    assert float(np.sqrt(np.mean(audio.samples[8000:-8000] ** 2))) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)
    assert audio.describe()["sha256"] == audio.sha256 and len(audio.sha256) == 64


def test_sniffing_reads_bytes_not_names() -> None:
    assert sniff_audio(b"\x89PNG\r\n\x1a\n" + b"\0" * 32) is None
    assert sniff_audio(b"just some text, not audio") is None
    assert sniff_audio(b"\x00\x00\x00\x1cftypisom\x00\x00\x02\x00isomiso2") is None  # a video, not M4A
    assert sniff_audio(b"\xff\xfb\x90\x00") == "audio/mpeg"
    assert sniff_audio(b"RIFF\x00\x00\x00\x00WEBPVP8 ") is None


@pytest.mark.parametrize(
    ("data", "error", "code"),
    [
        (b"", BadInput, "empty_media"),
        (b"hello, this is text", UnsupportedMedia, "unsupported_audio"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, UnsupportedMedia, "unsupported_audio"),
        (b"fLaC" + bytes(range(256)) * 8, BadInput, "corrupt_audio"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 40, BadInput, "corrupt_audio"),
        (b"OggS" + b"\x00" * 200, BadInput, "corrupt_audio"),
    ],
)
def test_refusals(data: bytes, error: type[Exception], code: str) -> None:
    with pytest.raises(error) as info:
        decode_audio(data)
    assert type(info.value) is error and info.value.code == code  # type: ignore[attr-defined]


def test_limits_are_checked_before_decoding() -> None:
    data = encode_audio(fake_voice_samples(1, 3.0), 16_000, "audio/wav", channels=2)
    with pytest.raises(TooLarge, match="bytes"):
        decode_audio(data, AudioLimits(max_bytes=1000))
    with pytest.raises(TooLarge, match="lasts 3.0 s"):
        decode_audio(data, AudioLimits(max_seconds=2.0))
    with pytest.raises(TooLarge, match="2 channels"):
        decode_audio(data, AudioLimits(max_channels=1))
    low = encode_audio(fake_voice_samples(1, 1.0, rate=4000), 4000, "audio/wav")
    with pytest.raises(UnsupportedMedia, match="sample rate 4000"):
        decode_audio(low)


def test_probe_checks_the_headers_and_the_first_second_only(tmp_path: object) -> None:
    """An audio job's intake (`probe_audio`): the same refusals as decoding, read from the headers; a
    file whose headers and first second decode passes (the job decodes the rest)."""
    from pathlib import Path

    root = Path(str(tmp_path))
    path = root / "ok.flac"
    path.write_bytes(encode_audio(fake_voice_samples(1, 3.0), 16_000, "audio/flac", channels=2))
    probe = probe_audio(path)
    assert (probe.mime, probe.codec, probe.sample_rate, probe.channels) == ("audio/flac", "flac", 16_000, 2)
    assert probe.declared_s is not None and abs(probe.declared_s - 3.0) < 0.05
    with pytest.raises(TooLarge, match="lasts 3.0 s"):
        probe_audio(path, AudioLimits(max_seconds=2.0))
    with pytest.raises(TooLarge, match="2 channels"):
        probe_audio(path, AudioLimits(max_channels=1))
    with pytest.raises(TooLarge, match="bytes"):
        probe_audio(path, AudioLimits(max_bytes=100))
    (root / "noise.bin").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(UnsupportedMedia):
        probe_audio(root / "noise.bin")
    (root / "header.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(64))
    with pytest.raises(BadInput) as info:
        probe_audio(root / "header.wav")
    assert info.value.code == "corrupt_audio"


def test_a_header_that_lies_about_duration_is_caught_while_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Headers that declare no duration (or a false one): the decoder itself stops at the limit."""
    import gateway.audio.intake as intake

    data = bytearray(encode_audio(fake_voice_samples(1, 3.0), 16_000, "audio/wav"))
    pos = data.index(b"data")
    struct.pack_into("<I", data, pos + 4, 0xFFFFFFFF)  # "unknown size": FFmpeg reads to the end
    monkeypatch.setattr(intake, "_declared_seconds", lambda container, stream: None)
    with pytest.raises(TooLarge, match="longer than 2 s"):
        decode_audio(bytes(data), AudioLimits(max_seconds=2.0))


def test_a_codec_the_container_is_not_taken_with_is_415() -> None:
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="wav") as out:
        stream = out.add_stream("adpcm_ms", rate=16_000, layout="mono")  # type: ignore[call-overload]
        frame = av.AudioFrame.from_ndarray((fake_voice_samples(1, 1.0) * 32767).astype(np.int16)[None, :],
                                           format="s16", layout="mono")
        frame.sample_rate = 16_000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    with pytest.raises(UnsupportedMedia, match="adpcm_ms"):
        decode_audio(buf.getvalue())


def test_video_soundtracks_go_through_the_same_path(tmp_path: object) -> None:
    from pathlib import Path

    from gateway.video.testing import make_test_video

    folder = Path(str(tmp_path))
    with_audio = make_test_video(folder / "a.mp4", [("coffee", 0.0, 2.0, None)], audio_tone_hz=440.0)
    track = decode_soundtrack(with_audio)
    assert track is not None and track.duration_s == pytest.approx(2.0, abs=0.15)
    assert _peak_hz(track.samples) == pytest.approx(440.0, abs=2.0)
    with pytest.raises(TooLarge, match="soundtrack lasts"):
        decode_soundtrack(with_audio, AudioLimits(max_seconds=1.0))
    silent = make_test_video(folder / "b.mp4", [("coffee", 0.0, 1.0, None)], audio_tone_hz=None)
    assert decode_soundtrack(silent) is None


@pytest.mark.parametrize("box", [b"stts", b"stsz", b"stsc"])
def test_m4a_with_absurd_tables_is_refused_not_crashed(box: bytes) -> None:
    """Entry counts of ~2^31 in an M4A's sample tables: FFmpeg runs out of memory or finds the box
    short; either way a 4xx (413 or 400), never a 500 or a hang."""
    from tests.hardening.corpus import mp4_set_count

    data = mp4_set_count(encode_audio(fake_voice_samples(1, 2.0), 16_000, "audio/mp4"), box, 0x7FFFFFFF)
    with pytest.raises(BadInput) as info:
        decode_audio(data)
    assert info.value.status in (400, 413) and info.value.code in ("audio_too_large", "corrupt_audio")


def test_truncated_files_are_400_or_shorter(tmp_path: object) -> None:
    for mime in FORMATS:
        data = encode_audio(fake_voice_samples(1, 2.0), 16_000, mime)
        try:
            audio = decode_audio(data[: len(data) // 2])
        except BadInput as exc:
            assert exc.status == 400 and exc.code == "corrupt_audio", mime
        else:
            assert audio.duration_s <= 2.0, mime
