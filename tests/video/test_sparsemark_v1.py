"""The first layout (version 1) of the "video-sparse" mark: no longer used to mark, still found
in its releases through `detect_sparse_in_file`'s fallback."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from gateway.video.engine import MarkSpec, run_pass
from gateway.video.sparsemark import SparseMark, detect_sparse_in_file
from gateway.video.sparsemark_v1 import EVERY, SparseMarkV1
from gateway.video.testing import load_source, make_test_video

WM_ID = 0x2B_1234_5678


def test_v1_touches_every_15th_frame_and_one_marked_frame_decodes() -> None:
    y = cv2.resize(cv2.cvtColor(load_source("astronaut"), cv2.COLOR_RGB2GRAY), (640, 360))
    mark = SparseMarkV1(WM_ID, strength=2.8)
    changed = [i for i in range(2 * EVERY + 1) if not np.array_equal(mark.mark_luma(y, i), y)]
    assert changed == [0, EVERY, 2 * EVERY]
    assert SparseMarkV1().detect([mark.mark_luma(y, 0)]).wm_id == WM_ID
    assert SparseMarkV1().detect([y, cv2.flip(y, 1)]).wm_id is None


def test_a_version_1_release_is_still_found_by_the_verifier(video_dir: Path) -> None:
    src = make_test_video(video_dir / "v1src.mp4", [("astronaut", 0, 1.5, "pan")], fps=30, size=(640, 360),
                          audio_tone_hz=None)
    out = video_dir / "v1marked.mp4"
    run_pass(src, mark=MarkSpec(out, SparseMarkV1(WM_ID, strength=2.8)))
    from gateway.video.intake import luma_frames

    assert SparseMark().detect(luma_frames(out)).wm_id is None  # not the current layout ...
    assert detect_sparse_in_file(out).wm_id == WM_ID  # ... but the fallback finds it
