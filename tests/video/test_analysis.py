"""analyze_video: batching into NSFW models, timestamps on findings, faces where they appear."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from classifiers.base import DetectedFace, FaceAnalyzer, ModelError, ModelInfo, NsfwClassifier
from gateway.video.analysis import analyze_video
from gateway.video.testing import make_test_video


class DarkIsUnsafe:
    """Scores 'unsafe' 1.0 for dark frames; records batch sizes."""

    info = ModelInfo("dark", "test-1")
    labels: tuple[str, ...] = ("unsafe",)

    def __init__(self) -> None:
        self.batches: list[int] = []

    def classify(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        self.batches.append(len(images))
        return [{"unsafe": 1.0 if float(img.mean()) < 10 else 0.0} for img in images]


class Broken(DarkIsUnsafe):
    info = ModelInfo("broken", "test-1")

    def classify(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        raise ModelError("boom")


@pytest.fixture(scope="module")
def dark_middle(video_dir: Path) -> Path:
    return make_test_video(video_dir / "dark.mp4", [("coffee", 0, 1.5, None), ("black", 1.5, 3, None),
                                                    ("chelsea", 3, 4, None)], fps=10, audio_tone_hz=None)


def test_batches_and_time_ranges(dark_middle: Path) -> None:
    model = DarkIsUnsafe()
    assert isinstance(model, NsfwClassifier)
    facts = analyze_video(dark_middle, nsfw_models=[model], face_analyzer=None, fps=2.0, batch_size=3)
    assert [f.t for f in facts.frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert [f.is_scene_cut for f in facts.frames] == [False, False, False, True, False, False, True, False]
    assert model.batches == [3, 3, 2]
    summary = facts.nsfw_summary("dark", {"unsafe": 0.5})["unsafe"]
    assert summary["ranges"] == [[1.5, 3.0]] and summary["max"] == 1.0 and summary["max_t"] == 1.5
    assert facts.models["dark"].version == "test-1"


def test_model_error_propagates(dark_middle: Path) -> None:
    with pytest.raises(ModelError):
        analyze_video(dark_middle, nsfw_models=[Broken()], face_analyzer=None)


def _dlib() -> FaceAnalyzer:
    try:
        from classifiers.registry import builtin_registry

        analyzer: FaceAnalyzer = builtin_registry().create("face", "dlib", {})
        return analyzer
    except Exception as exc:  # the adapter or its weights are not installed here
        pytest.skip(f"dlib adapter unavailable: {exc}")


def test_faces_found_inside_the_range_they_appear(video_dir: Path) -> None:
    face = _dlib()
    segments = [("coffee", 0, 1, None), ("astronaut", 1, 2.5, "zoom"), ("chelsea", 2.5, 3.5, "pan"),
                ("grace_hopper", 3.5, 4.5, "pan_zoom")]
    path = make_test_video(video_dir / "faces.mp4", segments, fps=10, size=(480, 270), audio_tone_hz=None)
    facts = analyze_video(path, nsfw_models=[DarkIsUnsafe()], face_analyzer=face, fps=2.0)
    times = sorted({f.t for f in facts.faces})
    assert times, "no face found"
    assert all(1.0 <= t < 2.5 or 3.5 <= t < 4.5 for t in times)
    assert any(1.0 <= t < 2.5 for t in times) and any(3.5 <= t < 4.5 for t in times)
    for found in facts.faces:
        assert isinstance(found.face, DetectedFace)
        x0, y0, x1, y1 = found.face.bbox
        assert 0 <= x0 < x1 <= 480 + 2 and -2 <= y0 < y1 <= 270 + 2
        assert found.frame == round(found.t * 10)
    assert "dlib" in facts.models


def test_face_boxes_are_in_source_coordinates(video_dir: Path) -> None:
    face = _dlib()
    path = make_test_video(video_dir / "face_big.mp4", [("astronaut", 0, 0.5, None)], fps=10, size=(640, 360),
                           audio_tone_hz=None)
    full = analyze_video(path, nsfw_models=[], face_analyzer=face, fps=2.0)
    small = analyze_video(path, nsfw_models=[], face_analyzer=face, fps=2.0, max_side=320)
    assert full.faces and small.faces
    a, b = np.array(full.faces[0].face.bbox), np.array(small.faces[0].face.bbox)
    assert np.abs(a - b).max() <= 24
