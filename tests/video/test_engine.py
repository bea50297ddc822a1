"""The single-pass engine: one decode feeds the models (on their own thread) and the marker;
marking can be stopped early; cancellation and consumer errors leave no half-written file."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from classifiers.base import ModelError, ModelInfo
from gateway.video.analysis import FrameAnalyzer
from gateway.video.engine import MarkSpec, PassCancelled, SamplerSpec, run_pass
from gateway.video.intake import probe_video
from gateway.video.sampling import SampledFrame, sample_frames
from gateway.video.watermark import VideoWatermarker

WM_ID = 0x0BAD_C0FFEE


class Brightness:
    info = ModelInfo("brightness", "test-1")
    labels: tuple[str, ...] = ("bright",)

    def __init__(self) -> None:
        self.threads: set[str] = set()

    def classify(self, images: Sequence[object]) -> list[dict[str, float]]:
        self.threads.add(threading.current_thread().name)
        return [{"bright": float(img.mean()) / 255.0} for img in images]  # type: ignore[attr-defined]


class Broken(Brightness):
    info = ModelInfo("broken", "test-1")

    def classify(self, images: Sequence[object]) -> list[dict[str, float]]:
        raise ModelError("boom")


def test_one_pass_samples_and_marks(mp4_video: Path, tmp_path: Path) -> None:
    model = Brightness()
    analyzer = FrameAnalyzer({"b": model, "x": Broken()}, None, fps=2.0, source_width=320)
    out = tmp_path / "out.mp4"
    seen: list[float] = []
    result = run_pass(mp4_video, sampler=SamplerSpec(analyzer, fps=2.0, batch_size=3),
                      mark=MarkSpec(out, VideoWatermarker(WM_ID)), progress=seen.append)
    expected = [(s.index, s.t) for s in sample_frames(mp4_video, fps=2.0)]
    assert [(f.index, f.t) for f in analyzer.facts.frames] == expected
    assert len(analyzer.facts.nsfw["b"]) == len(expected) and "x" not in analyzer.facts.nsfw
    assert [(f.check, f.model) for f in analyzer.facts.failures] == [("nsfw.x", "broken")]
    assert model.threads == {"video-models"}  # the models ran beside the decoder, not in it
    assert result.output is not None and result.sampled == len(expected)
    assert result.output.frame_count == result.frames == probe_video(mp4_video).frame_count
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert VideoWatermarker().detect(s.rgb for s in sample_frames(out, fps=15.0)).wm_id == WM_ID


def test_stop_marking_abandons_the_file_but_not_the_analysis(mp4_video: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    batches: list[int] = []

    def on_batch(batch: Sequence[SampledFrame]) -> None:
        batches.append(len(batch))
        stop.set()

    out = tmp_path / "out.mp4"
    result = run_pass(mp4_video, sampler=SamplerSpec(on_batch, batch_size=2), mark=MarkSpec(out, None),
                      stop_marking=stop)
    assert result.output is None and not out.exists()
    assert sum(batches) == result.sampled == 8


def test_cancel_and_consumer_errors_leave_nothing(mp4_video: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    calls = {"n": 0}

    def stop_soon() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    with pytest.raises(PassCancelled):
        run_pass(mp4_video, mark=MarkSpec(out, VideoWatermarker(WM_ID)), should_stop=stop_soon)
    assert not out.exists()

    def explode(batch: Sequence[SampledFrame]) -> None:
        raise RuntimeError("model thread failed")

    with pytest.raises(RuntimeError, match="model thread failed"):
        run_pass(mp4_video, sampler=SamplerSpec(explode, batch_size=1), mark=MarkSpec(out, None))
    assert not out.exists()
    with pytest.raises(ValueError, match="sampler, a marker or both"):
        run_pass(mp4_video)
