"""mark_and_encode: the output plays, keeps timing and audio, and is always H.264 MP4."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from gateway.video.engine import mark_and_encode
from gateway.video.intake import VideoError, probe_video
from gateway.video.testing import make_test_video
from gateway.video.watermark import VideoWatermarker

WM_ID = 987_654_321


def _decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        return sum(f.samples / f.sample_rate for f in container.decode(audio=0))


@pytest.mark.parametrize(("fixture", "audio"), [("mp4_video", "copied"), ("webm_video", "aac"),
                                                 ("mov_video", None)])
def test_output_is_playable_mp4(request: pytest.FixtureRequest, tmp_path: Path, fixture: str,
                                audio: str | None) -> None:
    src: Path = request.getfixturevalue(fixture)
    before = probe_video(src)
    progress: list[float] = []
    out = tmp_path / "out.mp4"
    info = mark_and_encode(src, out, WM_ID, progress=progress.append)
    after = probe_video(out)
    assert (after.mime, after.video_codec) == ("video/mp4", "h264")
    assert info.frame_count == before.frame_count == _decoded_frames(out)
    assert after.fps == pytest.approx(before.fps, rel=1e-3)
    assert info.duration_s == pytest.approx(before.duration_s, abs=0.05)
    assert after.duration_s == pytest.approx(before.duration_s, abs=0.05)
    assert info.audio == audio
    if audio is not None:
        assert after.audio_codec == "aac"
        assert _audio_seconds(out) == pytest.approx(before.duration_s, abs=0.1)
    assert progress[-1] == 1.0 and progress == sorted(progress)
    assert VideoWatermarker().detect(_luma_frames(out, every=2)).wm_id == WM_ID


def _luma_frames(path: Path, every: int) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return [f.to_ndarray(format="gray") for f in frames[::every]]


def test_mp3_audio_is_copied(tmp_path: Path) -> None:
    src = make_test_video(tmp_path / "mp3.mp4", [("coffee", 0, 1, None)], audio_codec="mp3")
    info = mark_and_encode(src, tmp_path / "out.mp4", WM_ID)
    assert info.audio == "copied"
    assert probe_video(tmp_path / "out.mp4").audio_codec == "mp3"


def test_hevc_input(tmp_path: Path) -> None:
    src = make_test_video(tmp_path / "h265.mp4", [("grace_hopper", 0, 1, "zoom")], video_codec="libx265",
                          audio_tone_hz=None)
    info = mark_and_encode(src, tmp_path / "out.mp4", WM_ID)
    assert info.frame_count == 15 and probe_video(tmp_path / "out.mp4").video_codec == "h264"


def test_corrupt_input_is_video_error(tmp_path: Path, mp4_video: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(mp4_video.read_bytes()[:5000])
    with pytest.raises(VideoError) as err:
        mark_and_encode(bad, tmp_path / "out.mp4", WM_ID)
    assert err.value.status == 400


def test_watermarker_must_match_the_id(tmp_path: Path, mp4_video: Path) -> None:
    with pytest.raises(ValueError, match="another wm_id"):
        mark_and_encode(mp4_video, tmp_path / "o.mp4", WM_ID, watermarker=VideoWatermarker(WM_ID + 1))
