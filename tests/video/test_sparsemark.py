"""The "video-sparse" mark, version 3: every 15th frame, the image mark's self-synchronising
tile at a keyed cyclic shift per marked frame, static scenes' marked frames coded as P-frames.
Asserted on small generated clips: it decodes after a 10 % crop (+ re-encode), a half-bitrate
re-encode and a 0.5x downscale; no id out of unmarked video; on a static scene the estimate
from averaging 100 frames, subtracted, leaves a decodable mark (version 2's unshifted tile: it
does not); a static scene keeps its mark after 2 s and after a re-encode (keyed sign flips, tried
before the shifts, would erase it)."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from gateway.video.engine import MarkSpec, run_pass
from gateway.video.intake import luma_frames
from gateway.video.sparsemark import EVERY, SparseMark, detect_sparse_in_file
from gateway.video.testing import load_source, make_test_video

WM_ID = 0x2B_1234_5678
STRENGTH = 2.8  # strength_for(2.0, 640, 360): what a 360p release gets


def _luma(size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(cv2.cvtColor(load_source("astronaut"), cv2.COLOR_RGB2GRAY), size)


def test_every_15th_frame_carries_the_tile_at_a_keyed_shift_of_its_own() -> None:
    y = _luma((640, 360))
    plain = SparseMark(WM_ID, strength=STRENGTH, shift_seed=b"a")
    changed = [i for i in range(3 * EVERY + 1) if not np.array_equal(plain.mark_luma(y, i), y)]
    assert changed == [0, EVERY, 2 * EVERY, 3 * EVERY]
    assert {plain.sign_of(k) for k in range(64)} == {1}
    shifts = [plain.shift_of(k) for k in range(16)]
    assert len(set(shifts)) == 16  # a new shift on every marked frame ...
    assert [SparseMark(WM_ID, shift_seed=b"a").shift_of(k) for k in range(16)] == shifts
    assert [SparseMark(WM_ID, shift_seed=b"b").shift_of(k) for k in range(16)] != shifts  # ... keyed per release
    assert len({tuple(SparseMark(WM_ID).shift_of(k) for k in range(4)) for _ in range(3)}) == 3  # random by default
    a, b = (plain.field(y, k * EVERY).ravel() for k in (0, 1))
    assert abs(float(np.corrcoef(a, b)[0, 1])) < 0.1  # two marked frames' patterns are unrelated
    for k in range(3):  # and each decodes alone
        assert SparseMark().detect([plain.mark_luma(y, k * EVERY)]).wm_id == WM_ID
    assert SparseMark(WM_ID, shifts=False).shift_of(5) == (0, 0)  # version 2's layout


def test_marked_frames_carry_the_rolled_tile_and_the_marking_path_equals_the_field() -> None:
    """The shifted repetition is a window of one cached tiling (no per-frame roll and tile): it must
    equal the tile rolled by the keyed shift and repeated, and `mark_luma` (which scales the pattern
    in place) must add exactly `field`'s values."""
    from gateway.provenance import _tilesync as ts

    mark = SparseMark(WM_ID, strength=STRENGTH, shift_seed=b"w")
    assert mark._tile is not None
    for wh, ww in ((288, 512), (216, 380), (130, 129)):
        for dy, dx in ((0, 0), (1, 127), (64, 3), (127, 0), *(mark.shift_of(k) for k in range(4))):
            reps = (-(-wh // ts.TILE), -(-ww // ts.TILE))
            want = np.tile(np.roll(mark._tile, (dy, dx), axis=(0, 1)), reps)[:wh, :ww]
            assert np.array_equal(mark._shifted_tiles(wh, ww, dy, dx), want), (wh, ww, dy, dx)
    y = _luma((640, 360))
    for k in range(3):
        field = mark.field(y, k * EVERY)
        assert abs(float(np.sqrt(np.mean(field.astype(np.float64) ** 2))) - STRENGTH) < 0.05
        want = cv2.add(y, field, dtype=cv2.CV_8U)
        assert np.array_equal(mark.mark_luma(y, k * EVERY), want)


def test_optional_signs_are_balanced_in_pairs() -> None:
    y = _luma((640, 360))
    mark = SparseMark(WM_ID, strength=STRENGTH, flip_signs=True, shifts=False)
    signs = [mark.sign_of(k) for k in range(64)]
    assert all(signs[2 * j] == -signs[2 * j + 1] for j in range(32))
    assert signs[0::2] != [signs[0]] * 32  # the order within a pair is keyed, not fixed
    a, b = (mark.field(y, k * EVERY).ravel() for k in (0, 1))
    assert float(np.corrcoef(a, b)[0, 1]) < -0.99  # the pair's marks cancel
    assert abs(float(np.sqrt(np.mean(a.astype(np.float64) ** 2))) - STRENGTH) < 0.05
    with pytest.raises(ValueError, match="no wm_id"):
        SparseMark().mark_luma(y, 0)


def test_one_marked_frame_decodes_with_either_sign_and_unmarked_frames_do_not() -> None:
    y = _luma((640, 360))
    mark = SparseMark(WM_ID, strength=STRENGTH, flip_signs=True, shifts=False)
    for k in (0, 1):  # opposite signs
        assert SparseMark().detect([mark.mark_luma(y, k * EVERY)]).wm_id == WM_ID
    found = SparseMark().detect([y, cv2.flip(y, 1), np.full_like(y, 128)])
    assert found.wm_id is None and found.confidence == 0.0


def _transform(src: Path, dst: Path, *, bitrate: int | None = None, scale: float = 1.0, crop: float = 0.0) -> None:
    """Re-encode (libx264 veryfast, crf 23 unless `bitrate`), centre-cropped by `crop` of each
    side and scaled by `scale`."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        vin = inp.streams.video[0]
        w, h = vin.codec_context.width, vin.codec_context.height
        cw, ch = int(w * (1 - crop)) // 2 * 2, int(h * (1 - crop)) // 2 * 2
        x0, y0 = (w - cw) // 4 * 2, (h - ch) // 4 * 2
        ow, oh = int(cw * scale) // 2 * 2, int(ch * scale) // 2 * 2
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = ow, oh, "yuv420p"
        if bitrate:
            vout.bit_rate = bitrate
        vout.options = {"preset": "veryfast"}
        for frame in inp.decode(vin):
            planes = frame.to_ndarray(format="yuv420p")
            y = planes[:h, :w][y0:y0 + ch, x0:x0 + cw]
            u = planes[h:].reshape(2, h // 2, w // 2)[:, y0 // 2:(y0 + ch) // 2, x0 // 2:(x0 + cw) // 2]
            new = av.VideoFrame.from_ndarray(np.concatenate([y, u.reshape(-1, cw)]), format="yuv420p")
            if (ow, oh) != (cw, ch):
                new = new.reformat(width=ow, height=oh)
            new.pts, new.time_base = frame.pts, frame.time_base
            out.mux(vout.encode(new))
        out.mux(vout.encode(None))


@pytest.fixture(scope="module")
def sparse_360p(video_dir: Path) -> tuple[Path, Path]:
    segments = [("astronaut", 0, 1.5, "pan"), ("coffee", 1.5, 3, "zoom"), ("grace_hopper", 3, 4, None)]
    src = make_test_video(video_dir / "src360t.mp4", segments, fps=30, size=(640, 360), audio_tone_hz=None)
    out = video_dir / "tile360.mp4"
    # a fixed seed: a 360p crop decodes mostly from the clip's I-frames, and whether it does depends on
    # where the tile falls (docs/video.md: measured over seeds for version 3 and ids for version 2)
    run_pass(src, mark=MarkSpec(out, SparseMark(WM_ID, strength=STRENGTH, shift_seed=b"x")))
    return src, out


def test_decodes_after_a_10_percent_crop(sparse_360p: tuple[Path, Path], tmp_path: Path) -> None:
    src, marked = sparse_360p
    assert detect_sparse_in_file(marked).wm_id == WM_ID
    cropped = tmp_path / "crop.mp4"
    _transform(marked, cropped, crop=0.1)  # 5 % off every edge: 576x324, re-encoded at crf 23
    mark = SparseMark()
    scan = mark.scan(luma_frames(cropped), stop_early=False)
    assert mark.judge(scan).wm_id == WM_ID
    hyp = mark.best_hypothesis(scan)
    assert hyp is not None and hyp.lattice.scale != 1.0  # found through the lattice, not the frame edges
    coded, payload = mark.accuracy_of(scan, WM_ID)
    assert payload == 1.0 and coded >= 0.8
    # the source, unmarked, cropped the same way: no id (the lattice search included)
    _transform(src, tmp_path / "crop_src.mp4", crop=0.1)
    assert SparseMark().detect(luma_frames(tmp_path / "crop_src.mp4")).wm_id is None


def test_survives_half_bitrate_and_downscale(sparse_360p: tuple[Path, Path], tmp_path: Path) -> None:
    _, marked = sparse_360p
    rate = int(marked.stat().st_size * 8 / 4.0)
    _transform(marked, tmp_path / "half.mp4", bitrate=rate // 2)
    assert (tmp_path / "half.mp4").stat().st_size < 0.7 * marked.stat().st_size
    assert detect_sparse_in_file(tmp_path / "half.mp4").wm_id == WM_ID
    _transform(marked, tmp_path / "small.mp4", scale=0.5)
    mark = SparseMark()
    scan = mark.scan(luma_frames(tmp_path / "small.mp4"), stop_early=False)
    assert mark.judge(scan).wm_id == WM_ID and mark.accuracy_of(scan, WM_ID)[1] == 1.0


@pytest.fixture(scope="module")
def static_360p(video_dir: Path) -> tuple[Path, Path]:
    src = make_test_video(video_dir / "static360.mp4", [("coffee", 0.0, 4.0, None)], fps=30, size=(640, 360),
                          audio_tone_hz=None, crf=18)
    clean = video_dir / "static360_clean.mp4"
    run_pass(src, mark=MarkSpec(clean, None))
    return src, clean


def test_a_static_scene_keeps_its_mark_and_sign_flips_would_erase_it(static_360p: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    """Why keyed sign flips are not used: on a static scene x264 drops a marked B-frame's change
    and codes the first flip on a P-frame only in part, which cancels the mark (measured at 360p
    and 720p). The shifted tile's partly coded changes leave two shifted tiles, either decodes."""
    src, _ = static_360p
    found = {}
    # a fixed seed: the last 2 s of this static 360p clip decode for 3 of 4 shift seeds (measured; the whole
    # clip, with its I-frame, for all) — small static clips are version 3's weak case (docs/video.md)
    for name, options in (("shifted", {"shift_seed": b"a"}), ("flips", {"flip_signs": True, "shifts": False,
                                                      "static_references": False})):
        marked = tmp_path / f"static_{name}.mp4"
        run_pass(src, mark=MarkSpec(marked, SparseMark(WM_ID, strength=STRENGTH, **options)))  # type: ignore[arg-type]
        later = [y for i, y in enumerate(luma_frames(marked)) if i >= 4 * EVERY]  # the clip after 2 s
        found[name] = SparseMark().detect(later).wm_id
        if name == "shifted":
            _transform(marked, tmp_path / "static_again.mp4")  # a plain re-encode (crf 23)
            assert detect_sparse_in_file(tmp_path / "static_again.mp4").wm_id == WM_ID
    assert found["shifted"] == WM_ID
    assert found["flips"] is None  # the measured limit of flips


def test_averaging_a_static_scene_does_not_remove_the_shifted_mark(static_360p: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    """The issue's attack with an oracle: the pattern estimated as the mean of 100 marked frames
    minus the mean of the same frames encoded without the mark, subtracted from those frames.
    Version 2's estimate is its pattern (correlation with what the marker added ~0.5) and takes
    most of the mark with it; version 3's estimate is a mixture of shifted tiles that matches no
    marked frame's pattern, and the mark still decodes from the attacked frames."""
    src, clean = static_360p
    plain = np.mean([y.astype(np.float32) for y in islice(luma_frames(clean), 100)], axis=0)
    source = next(iter(luma_frames(src)))
    found, match, frames_as_p = {}, {}, {}
    for version, shifted in (("2", False), ("3", True)):
        marked = tmp_path / f"static_v{version}.mp4"
        mark = SparseMark(WM_ID, strength=STRENGTH, shifts=shifted, static_references=shifted, shift_seed=b"t")
        run_pass(src, mark=MarkSpec(marked, mark))
        assert detect_sparse_in_file(marked).wm_id == WM_ID  # both versions read by the one detector
        frames = [y.astype(np.float32) for y in islice(luma_frames(marked), 100)]
        estimate = np.mean(frames, axis=0) - plain
        match[version] = max(float(np.corrcoef(estimate.ravel(), mark.field(source, k * EVERY).ravel())[0, 1])
                             for k in range(7))
        attacked = [np.clip(y - estimate, 0, 255).astype(np.uint8) for y in frames]
        found[version] = SparseMark().detect(attacked)
        frames_as_p[version] = mark.static_frames
    print({v: (round(match[v], 3), found[v].wm_id == WM_ID, round(found[v].score, 2)) for v in match})
    assert match["2"] > 0.3 and match["3"] < 0.2
    assert found["3"].wm_id == WM_ID
    assert frames_as_p == {"2": 0, "3": 7}  # every marked frame after the first one of the 4 s clip (8 marked)


def test_frames_under_360_rows_get_the_version_1_grid() -> None:
    from gateway.video.sparsemark_v1 import SparseMarkV1

    small = _luma((320, 240))
    marked = SparseMark(WM_ID, strength=3.5).mark_luma(small, 0)
    assert np.array_equal(marked, SparseMarkV1(WM_ID, strength=3.5).mark_luma(small, 0))
    assert detect_sparse_in_file.__doc__ is not None and "version 1" in detect_sparse_in_file.__doc__


def test_the_recorded_version_follows_the_frame_height() -> None:
    """Releases under 360 rows carry version 1's grid, the others the tile: the C2PA soft
    binding records which (gateway/pipeline/video.py passes `version_for` to the claim)."""
    from gateway.video.sparsemark import SMALL_ROWS, VERSION, version_for

    assert VERSION == "3"
    assert [version_for(h) for h in (144, 240, SMALL_ROWS - 1, SMALL_ROWS, 720, 1080)] == ["1", "1", "1", "3", "3", "3"]
