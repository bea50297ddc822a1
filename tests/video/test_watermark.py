"""The video watermark: marking, blind detection, robustness to re-encoding, no false ids."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import skimage.data

from gateway.video.engine import mark_and_encode
from gateway.video.sampling import sample_frames
from gateway.video.testing import load_source, make_test_video
from gateway.video.watermark import VideoWatermarker

WM_ID = 0x5A5A_1234_77


def _luma(size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(cv2.cvtColor(load_source("astronaut"), cv2.COLOR_RGB2GRAY), size)


def _reencode(src: Path, dst: Path, crf: int) -> None:
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        vout.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in inp.decode(vin):
            frame.pict_type = av.video.frame.PictureType.NONE
            out.mux(vout.encode(frame))
        out.mux(vout.encode(None))


def test_single_frame_round_trip_and_quality() -> None:
    y = _luma((640, 360))
    marked = VideoWatermarker(WM_ID).mark_luma(y, 0)
    assert marked.shape == y.shape and marked.dtype == np.uint8
    diff = marked.astype(np.float64) - y
    psnr = 10 * np.log10(255**2 / np.mean(diff**2))
    assert psnr > 38
    found = VideoWatermarker().detect([marked])
    assert found.wm_id == WM_ID and found.frames_used == 1 and found.confidence > 0.9


def test_detects_from_rgb_and_rescaled_frames() -> None:
    y = _luma((1280, 720))
    marked = VideoWatermarker(WM_ID).mark_luma(y, 0)
    rgb = cv2.cvtColor(cv2.resize(marked, (640, 360), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2RGB)
    assert VideoWatermarker().detect([rgb]).wm_id == WM_ID


def test_other_key_does_not_decode() -> None:
    marked = VideoWatermarker(WM_ID).mark_luma(_luma((640, 360)), 0)
    assert VideoWatermarker(key=b"another deployment").detect([marked]).wm_id is None


@pytest.mark.parametrize("kind", ["astronaut", "coffee", "noise", "black", "gradient"])
def test_unmarked_frames_never_decode(kind: str) -> None:
    rng = np.random.default_rng(1)
    frames: list[np.ndarray] = []
    for i in range(12):
        if kind == "noise":
            frames.append(rng.integers(0, 256, (360, 640), dtype=np.uint8))
        elif kind == "black":
            frames.append(np.zeros((360, 640), np.uint8))
        elif kind == "gradient":
            frames.append(np.tile(np.linspace(0, 255, 640, dtype=np.uint8), (360, 1)))
        else:
            img = getattr(skimage.data, kind)()
            gray = cv2.cvtColor(np.roll(img, 7 * i, axis=1), cv2.COLOR_RGB2GRAY)
            frames.append(cv2.resize(gray, (640, 360)))
    found = VideoWatermarker().detect(frames)
    assert found.wm_id is None
    assert found.score < 2.5


def test_unmarked_video_never_decodes(mp4_video: Path, webm_video: Path) -> None:
    for path in (mp4_video, webm_video):
        found = VideoWatermarker().detect(s.rgb for s in sample_frames(path, fps=4.0))
        assert found.wm_id is None and found.frames_used > 0


def test_mark_needs_an_id() -> None:
    with pytest.raises(ValueError, match="no wm_id"):
        VideoWatermarker().mark_luma(np.zeros((64, 64), np.uint8), 0)


@pytest.fixture(scope="module")
def marked_360p(video_dir: Path) -> tuple[Path, Path]:
    segments = [("astronaut", 0, 1.5, "pan"), ("coffee", 1.5, 3, "zoom"), ("grace_hopper", 3, 4, None)]
    src = make_test_video(video_dir / "src360.mp4", segments, fps=15, size=(640, 360))
    out = video_dir / "marked360.mp4"
    mark_and_encode(src, out, WM_ID)
    return src, out


def test_watermark_survives_lower_bitrate_reencode(marked_360p: tuple[Path, Path], tmp_path: Path) -> None:
    _, marked = marked_360p
    assert VideoWatermarker().detect(s.rgb for s in sample_frames(marked)).wm_id == WM_ID
    lower = tmp_path / "lower.mp4"
    _reencode(marked, lower, crf=30)
    assert lower.stat().st_size < 0.6 * marked.stat().st_size
    found = VideoWatermarker().detect(s.rgb for s in sample_frames(lower, fps=2.0))
    assert found.wm_id == WM_ID and found.frames_used >= 8


def test_unmarked_source_of_the_same_clip_does_not_decode(marked_360p: tuple[Path, Path]) -> None:
    src, _ = marked_360p
    assert VideoWatermarker().detect(s.rgb for s in sample_frames(src, fps=4.0)).wm_id is None
