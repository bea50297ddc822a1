"""Sampling: the rate, scene cuts, and per-label summaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.video.sampling import sample_frames, summarise


def test_samples_at_rate_plus_scene_cuts(mp4_video: Path) -> None:
    samples = list(sample_frames(mp4_video, fps=2.0))
    cuts = [(s.index, s.t) for s in samples if s.is_scene_cut]
    assert cuts == [(30, 2.0), (45, 3.0)]  # astronaut -> coffee at 2 s, coffee -> Grace Hopper at 3 s
    regular = [s.t for s in samples if not s.is_scene_cut]
    assert regular[0] == 0.0 and len(samples) == 8
    gaps = [b - a for a, b in zip([s.t for s in samples], [s.t for s in samples][1:], strict=False)]
    assert max(gaps) <= 0.5 + 1 / 15 + 1e-6
    assert all(s.rgb.shape == (240, 320, 3) for s in samples)


def test_extra_sample_between_regular_ones_on_a_cut(mp4_video: Path) -> None:
    samples = list(sample_frames(mp4_video, fps=0.4, change_threshold=None))  # regular samples at 0 and 2.5 s
    assert [(s.index, s.is_scene_cut) for s in samples] == [(0, False), (30, True), (38, False), (45, True)]
    # the change detector adds a frame of the fast 1 s zoom on Grace Hopper (3-4 s) the grid left out
    changed = [(s.index, s.reason) for s in sample_frames(mp4_video, fps=0.4) if s.reason == "change"]
    assert changed and all(45 < i < 60 for i, _ in changed)


def test_no_cuts_in_pans(tmp_path: Path) -> None:
    from gateway.video.testing import make_test_video

    path = make_test_video(tmp_path / "pan.mp4", [("chelsea", 0, 1, "pan"), ("astronaut", 1, 2, "pan_zoom")],
                           fps=15, audio_tone_hz=None)
    cuts = [s.index for s in sample_frames(path, fps=1.0) if s.is_scene_cut]
    assert cuts == [15]


def test_downscale_and_progress(webm_video: Path) -> None:
    seen: list[float] = []
    samples = list(sample_frames(webm_video, max_side=160, progress=seen.append))
    assert samples[0].rgb.shape == (120, 160, 3)
    assert seen[-1] == 1.0 and seen == sorted(seen)


def test_summarise_ranges_and_max() -> None:
    scores = [(0.0, {"nsfw": 0.1}), (0.5, {"nsfw": 0.9}), (1.0, {"nsfw": 0.85}), (1.5, {"nsfw": 0.2}),
              (2.0, {"nsfw": 0.95}), (2.2, {"nsfw": 0.99, "other": 0.3})]
    out = summarise(scores, {"nsfw": 0.8, "missing": 0.5}, frame_interval=0.5)
    assert out["nsfw"]["max"] == pytest.approx(0.99) and out["nsfw"]["max_t"] == 2.2
    assert out["nsfw"]["ranges"] == [[0.5, 1.5], [2.0, 2.7]]
    assert out["other"] == {"max": 0.3, "max_t": 2.2, "ranges": []}
    assert out["missing"] == {"max": 0.0, "max_t": None, "ranges": []}


@pytest.mark.parametrize("name", ["mp4_video", "webm_video", "mov_video"])
def test_signatures_computed_together_equal_each_alone(name: str, request: pytest.FixtureRequest) -> None:
    """The sampler computes the cut and change signatures in one go (the luma work once); they must
    be exactly what `_signature` and `_colour_signature` give alone, or sampling would change."""
    import av
    import numpy as np

    from gateway.video.sampling import _colour_signature, _signature, _signatures

    path = request.getfixturevalue(name)
    checked = 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            luma, colour = _signatures(frame, True)
            assert colour is not None
            for got, want in zip((*luma, *colour), (*_signature(frame), *_colour_signature(frame)), strict=True):
                assert got.dtype == want.dtype and np.array_equal(got, want)
            alone, none = _signatures(frame, False)
            assert none is None and all(np.array_equal(a, b) for a, b in zip(alone, luma, strict=True))
            checked += 1
    assert checked > 10
