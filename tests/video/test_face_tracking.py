"""Embedding once per face track: reuse only within a shot, for an overlapping box that still
looks the same, and never for longer than REEMBED_EVERY samples; the two-stage dlib calls give
the same embeddings as one `analyze`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from classifiers.base import DetectedFace, ModelInfo, TwoStageFaceAnalyzer
from gateway.video.analysis import REEMBED_EVERY, FaceTracker
from gateway.video.testing import load_source


class BoxesAnalyzer:
    """Detects the boxes it is told to; embeds each face as a vector of its embed-call number."""

    info = ModelInfo("boxes", "0")
    embedding_dim = 4

    def __init__(self) -> None:
        self.boxes: list[tuple[int, int, int, int]] = []
        self.embed_calls = 0
        self.embedded_faces = 0

    def analyze(self, image: np.ndarray) -> list[DetectedFace]:
        return self.embed(image, self.detect(image))

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        return [DetectedFace(bbox=b, det_score=0.9) for b in self.boxes]

    def embed(self, image: np.ndarray, faces: Sequence[DetectedFace]) -> list[DetectedFace]:
        self.embed_calls += 1
        out = []
        for f in faces:
            self.embedded_faces += 1
            vec = np.array([self.embedded_faces, 0, 0, 0], np.float32)
            out.append(DetectedFace(bbox=f.bbox, det_score=f.det_score, embedding=vec))
        return out


def textured(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (120, 160, 3), dtype=np.uint8)


def test_a_still_face_is_embedded_once_per_reembed_interval() -> None:
    fake = BoxesAnalyzer()
    assert isinstance(fake, TwoStageFaceAnalyzer)
    fake.boxes = [(40, 30, 90, 90)]
    tracker = FaceTracker(fake)
    image = textured(1)
    ids = [int(tracker.faces(image, scene_cut=False)[0].embedding[0]) for _ in range(7)]  # type: ignore[index]
    assert ids == [1 + i // REEMBED_EVERY for i in range(7)]
    assert tracker.embedded == len(set(ids)) and tracker.reused == 7 - len(set(ids))


@pytest.mark.parametrize("change", ["scene_cut", "moved", "new_look"])
def test_anything_that_may_be_another_face_is_embedded_again(change: str) -> None:
    fake = BoxesAnalyzer()
    fake.boxes = [(40, 30, 90, 90)]
    tracker = FaceTracker(fake)
    first = tracker.faces(textured(1), scene_cut=False)[0].embedding
    image, cut = textured(1), False
    if change == "scene_cut":
        cut = True
    elif change == "moved":
        fake.boxes = [(100, 30, 150, 90)]  # no overlap with the track
    else:
        image = textured(2)  # same place, different content
    second = tracker.faces(image, scene_cut=cut)[0].embedding
    assert first is not None and second is not None
    assert second[0] != first[0]
    assert tracker.embedded == 2 and tracker.reused == 0


def test_two_faces_keep_their_own_tracks() -> None:
    fake = BoxesAnalyzer()
    fake.boxes = [(10, 10, 50, 60), (100, 10, 150, 60)]
    tracker = FaceTracker(fake)
    image = textured(3)
    a = [f.embedding[0] for f in tracker.faces(image, False)]  # type: ignore[index]
    b = [f.embedding[0] for f in tracker.faces(image, False)]  # type: ignore[index]
    assert a == b and a[0] != a[1]
    assert fake.embed_calls == 1


def test_dlib_two_stage_equals_analyze() -> None:
    try:
        from classifiers.registry import builtin_registry

        dlib = builtin_registry().create("face", "dlib", {})
    except Exception as exc:  # noqa: BLE001 - the adapter or its weights are not installed here
        pytest.skip(f"dlib adapter unavailable: {exc}")
    assert isinstance(dlib, TwoStageFaceAnalyzer)
    image = load_source("astronaut")
    whole = dlib.analyze(image)
    detected = dlib.detect(image)
    assert len(whole) == len(detected) == 1 and detected[0].embedding is None
    staged = dlib.embed(image, detected)
    assert staged[0].bbox == whole[0].bbox
    np.testing.assert_allclose(staged[0].embedding, whole[0].embedding, atol=1e-6)
