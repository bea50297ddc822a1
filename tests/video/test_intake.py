"""Intake: sniffing from bytes, limits, and malformed input that must give VideoError, not a crash."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gateway.video.intake import VideoError, VideoLimits, probe_video, sniff_video
from gateway.video.testing import make_test_video


def _ebml(doctype: bytes) -> bytes:
    body = b"\x42\x82" + bytes([0x80 | len(doctype)]) + doctype
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(body)]) + body + b"\x18\x53\x80\x67"


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x02\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\x00" * 16


@pytest.mark.parametrize(("data", "expected"), [
    (_ftyp(b"isom", b"isom", b"avc1"), "video/mp4"),
    (_ftyp(b"mp42"), "video/mp4"),
    (_ftyp(b"qt  ", b"qt  "), "video/quicktime"),
    (_ftyp(b"abcd", b"mp41"), "video/mp4"),
    (_ftyp(b"heic", b"mif1"), None),
    (_ftyp(b"avif", b"mif1", b"miaf"), None),
    (_ftyp(b"M4A ", b"isom"), None),
    (_ebml(b"webm"), "video/webm"),
    (_ebml(b"matroska"), None),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, None),
    (b"", None),
    (b"\x1a\x45\xdf\xa3\xff", None),
    (b"\x00\x00\x00\x04ftyp", None),
])
def test_sniff(data: bytes, expected: str | None) -> None:
    assert sniff_video(data) == expected


def test_sniff_real_files(mp4_video: Path, webm_video: Path, mov_video: Path) -> None:
    assert sniff_video(mp4_video.read_bytes()[:4096]) == "video/mp4"
    assert sniff_video(webm_video.read_bytes()[:4096]) == "video/webm"
    assert sniff_video(mov_video.read_bytes()[:4096]) == "video/quicktime"


def test_probe_describes_each_container(mp4_video: Path, webm_video: Path, mov_video: Path) -> None:
    mp4 = probe_video(mp4_video)
    assert (mp4.mime, mp4.width, mp4.height, mp4.frame_count, mp4.video_codec, mp4.audio_codec) == (
        "video/mp4", 320, 240, 60, "h264", "aac")
    assert mp4.fps == pytest.approx(15.0)
    assert mp4.duration_s == pytest.approx(4.0, abs=0.05)
    webm = probe_video(webm_video)
    assert (webm.mime, webm.video_codec, webm.audio_codec) == ("video/webm", "vp8", "opus")
    assert webm.frame_count == 60
    mov = probe_video(mov_video)
    assert (mov.mime, mov.audio_codec, mov.frame_count) == ("video/quicktime", None, 30)


@pytest.mark.parametrize(("limits", "needle"), [
    (VideoLimits(max_bytes=1000), "bytes"),
    (VideoLimits(max_seconds=3.0), "lasts"),
    (VideoLimits(max_width=300, max_height=300), "exceeds"),
    (VideoLimits(max_frames=59), "frames"),
])
def test_limits_give_413(mp4_video: Path, limits: VideoLimits, needle: str) -> None:
    with pytest.raises(VideoError) as err:
        probe_video(mp4_video, limits)
    assert err.value.status == 413 and err.value.code == "video_too_large"
    assert needle in err.value.message


def test_portrait_passes_orientation_agnostic_limits(mp4_video: Path) -> None:
    info = probe_video(mp4_video, VideoLimits(max_width=240, max_height=320))
    assert info.width == 320


def test_unsupported_codec_gives_415(tmp_path: Path) -> None:
    path = make_test_video(tmp_path / "mpeg4.mp4", [("coffee", 0, 0.5, None)], video_codec="mpeg4",
                           audio_tone_hz=None)
    with pytest.raises(VideoError) as err:
        probe_video(path)
    assert (err.value.status, err.value.code) == (415, "unsupported_codec")


def test_not_a_video_gives_415(tmp_path: Path) -> None:
    path = tmp_path / "x.mp4"
    path.write_bytes(b"GIF89a" + b"\x00" * 100)
    with pytest.raises(VideoError) as err:
        probe_video(path)
    assert err.value.status == 415


def test_truncated_and_corrupted_files_give_400(tmp_path: Path, mp4_video: Path, webm_video: Path) -> None:
    rng = random.Random(7)
    outcomes: set[int] = set()
    for source in (mp4_video, webm_video):
        data = source.read_bytes()
        variants = [data[:n] for n in (16, 40, 200, 1000, len(data) // 3, len(data) // 2)]
        for _ in range(12):  # flip bytes in the first 2 KiB, where the headers live
            buf = bytearray(data)
            for _ in range(4):
                buf[rng.randrange(8, 2048)] ^= rng.randrange(1, 256)
            variants.append(bytes(buf))
        for i, variant in enumerate(variants):
            path = tmp_path / f"bad{i}{source.suffix}"
            path.write_bytes(variant)
            try:
                probe_video(path)
                outcomes.add(200)
            except VideoError as err:  # anything else is a test failure
                assert err.status in (400, 413, 415)
                outcomes.add(err.status)
    assert 400 in outcomes


def test_mp4_truncated_mdat_is_400(tmp_path: Path) -> None:
    # moov written last (PyAV's default): cutting the file loses it -> cannot parse
    src = make_test_video(tmp_path / "a.mp4", [("coffee", 0, 1, None)], audio_tone_hz=None)
    data = src.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(VideoError) as err:
        probe_video(cut)
    assert (err.value.status, err.value.code) == (400, "corrupt_video")
    assert str(tmp_path) not in err.value.message
