"""Why: `mtcnn+dlib` runs facenet-pytorch's shipped MTCNN weights (offline) and hands its boxes to
dlib's landmarks and ResNet embedder. On the real test images it must find the one face in the
astronaut and Grace Hopper and none in coffee or the cat, and its embeddings must sit in dlib's
space (same person via either detector: cosine ~0.99+). Extras venv only (needs torchvision)."""

from __future__ import annotations

import numpy as np
import pytest

from classifiers import FaceAnalyzer, builtin_registry
from tests.models.conftest import needs_mtcnn

pytestmark = needs_mtcnn


@pytest.fixture(scope="module")
def mtcnn() -> FaceAnalyzer:
    return builtin_registry().face("mtcnn+dlib")


def test_real_images(
    mtcnn: FaceAnalyzer,
    astronaut: np.ndarray,
    grace_hopper: np.ndarray,
    coffee: np.ndarray,
    chelsea: np.ndarray,
) -> None:
    (face,) = mtcnn.analyze(astronaut)
    x0, y0, x1, y1 = face.bbox
    assert 150 < x0 < x1 < 300 and 40 < y0 < y1 < 200  # Eileen Collins' face, upper left of centre
    assert face.det_score > 0.99 and len(face.landmarks) == 5
    assert face.embedding is not None and face.embedding.shape == (128,)
    assert float(np.linalg.norm(face.embedding)) == pytest.approx(1.0, abs=1e-5)
    assert len(mtcnn.analyze(grace_hopper)) == 1
    assert mtcnn.analyze(coffee) == []
    assert mtcnn.analyze(chelsea) == []


def test_embeddings_live_in_dlib_space(
    mtcnn: FaceAnalyzer, astronaut: np.ndarray, grace_hopper: np.ndarray
) -> None:
    dlib = builtin_registry().face("dlib")
    for image in (astronaut, grace_hopper):
        (a,) = mtcnn.analyze(image)
        (b,) = dlib.analyze(image)
        assert a.embedding is not None and b.embedding is not None
        similarity = float(a.embedding @ b.embedding)
        print(f"mtcnn+dlib vs dlib, same image: cosine {similarity:.4f}")
        assert similarity > 0.97
    (collins,) = mtcnn.analyze(astronaut)
    (hopper,) = mtcnn.analyze(grace_hopper)
    assert collins.embedding is not None and hopper.embedding is not None
    assert float(collins.embedding @ hopper.embedding) < 0.93


def test_detect_only_and_versions(astronaut: np.ndarray) -> None:
    registry = builtin_registry()
    detect = registry.face("mtcnn+dlib", {"embed": False})
    (face,) = detect.analyze(astronaut)
    assert face.embedding is None and len(face.landmarks) == 5
    assert (
        detect.info.version == registry.face("mtcnn+dlib").info.version != registry.face("dlib").info.version
    )
