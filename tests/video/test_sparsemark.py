"""The "video-sparse" mark: only every 15th frame touched, variants that change over time, blind
detection that weighs frames by their evidence, robustness to a re-encode and a downscale, and
no id out of unmarked video."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from gateway.video.engine import MarkSpec, run_pass
from gateway.video.sparsemark import EVERY, SparseMark, detect_sparse_in_file, luma_frames
from gateway.video.testing import load_source, make_test_video

WM_ID = 0x2B_1234_5678


def _luma(size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(cv2.cvtColor(load_source("astronaut"), cv2.COLOR_RGB2GRAY), size)


def test_only_every_15th_frame_is_touched_and_variants_change() -> None:
    mark = SparseMark(WM_ID)
    y = _luma((640, 360))
    changed = [i for i in range(3 * EVERY + 1) if not np.array_equal(mark.mark_luma(y, i), y)]
    assert changed == [0, EVERY, 2 * EVERY, 3 * EVERY]
    deltas = [mark.mark_luma(y, i).astype(np.int16) - y for i in (0, EVERY)]
    # consecutive marked frames carry different chip sets: their fields barely correlate
    a, b = (d.ravel().astype(np.float64) for d in deltas)
    assert abs(float(np.corrcoef(a, b)[0, 1])) < 0.3
    with pytest.raises(ValueError, match="no wm_id"):
        SparseMark().mark_luma(y, 0)


def test_one_marked_frame_decodes_and_unmarked_frames_do_not() -> None:
    y = _luma((640, 360))
    marked = SparseMark(WM_ID, strength=2.8).mark_luma(y, 0)  # strength_for(2.0, 640, 360)
    assert SparseMark().detect([marked]).wm_id == WM_ID
    assert SparseMark().detect([y, cv2.flip(y, 1), np.full_like(y, 128)]).wm_id is None


def _transform(src: Path, dst: Path, *, bitrate: int | None = None, scale: float = 1.0) -> None:
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        vin = inp.streams.video[0]
        w, h = vin.codec_context.width, vin.codec_context.height
        ow, oh = int(w * scale) // 2 * 2, int(h * scale) // 2 * 2
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = ow, oh, "yuv420p"
        if bitrate:
            vout.bit_rate = bitrate
        vout.options = {"preset": "veryfast"}
        for frame in inp.decode(vin):
            new = frame.reformat(width=ow, height=oh, format="yuv420p")
            new.pts, new.time_base = frame.pts, frame.time_base
            new.pict_type = av.video.frame.PictureType.NONE
            out.mux(vout.encode(new))
        out.mux(vout.encode(None))


@pytest.fixture(scope="module")
def sparse_360p(video_dir: Path) -> tuple[Path, Path]:
    segments = [("astronaut", 0, 1.5, "pan"), ("coffee", 1.5, 3, "zoom"), ("grace_hopper", 3, 4, None)]
    src = make_test_video(video_dir / "src360s.mp4", segments, fps=30, size=(640, 360), audio_tone_hz=None)
    out = video_dir / "sparse360.mp4"
    run_pass(src, mark=MarkSpec(out, SparseMark(WM_ID, strength=2.8)))
    return src, out


def test_survives_half_bitrate_and_downscale_but_not_in_the_source(sparse_360p: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    src, marked = sparse_360p
    assert detect_sparse_in_file(marked).wm_id == WM_ID
    rate = int(marked.stat().st_size * 8 / 4.0)
    _transform(marked, tmp_path / "half.mp4", bitrate=rate // 2)
    assert (tmp_path / "half.mp4").stat().st_size < 0.7 * marked.stat().st_size
    assert detect_sparse_in_file(tmp_path / "half.mp4").wm_id == WM_ID
    _transform(marked, tmp_path / "small.mp4", scale=0.5)
    assert SparseMark().bit_accuracy(luma_frames(tmp_path / "small.mp4"), WM_ID) >= 0.95
    assert detect_sparse_in_file(src).wm_id is None
    assert SparseMark().bit_accuracy(luma_frames(src), WM_ID) < 0.8
