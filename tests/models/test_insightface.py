"""Why: the insightface adapter must load a model-pack directory through insightface's own
`FaceAnalysis` (SCRFD routing by output count, ArcFace by input shape), never download, and turn
its faces into the FaceAnalyzer contract. Proved on a tiny pack of ONNX graphs the test builds
(tests/models/tiny.py documents what the tiny detector "sees")."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from classifiers import FaceAnalyzer, ModelError, builtin_registry
from tests.models.conftest import needs_insightface
from tests.models.pipeline import policy_with, run_check
from tests.models.tiny import ARC_DIM

pytestmark = needs_insightface


def _analyzer(folder: Path) -> FaceAnalyzer:
    return builtin_registry().face("insightface", {"model_dir": str(folder)})


def test_loads_pack_and_follows_the_contract(insightface_dir: Path, astronaut: np.ndarray) -> None:
    model = _analyzer(insightface_dir)
    assert isinstance(model, FaceAnalyzer)
    assert model.embedding_dim == ARC_DIM and len(model.info.version) == 16
    (face,) = model.analyze(astronaut)
    x0, y0, x1, y1 = face.bbox
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
    assert (x1 - x0) == pytest.approx(256 * 512 / 640, abs=2)  # 8 strides of 32 in the 640² detector input
    assert 0.9 < face.det_score <= 1.0
    assert len(face.landmarks) == 5
    assert face.embedding is not None and face.embedding.dtype == np.float32
    assert float(np.linalg.norm(face.embedding)) == pytest.approx(1.0, abs=1e-5)


def test_same_image_same_embedding_and_dark_images_have_no_face(
    insightface_dir: Path, astronaut: np.ndarray, grace_hopper: np.ndarray, coffee: np.ndarray
) -> None:
    model = _analyzer(insightface_dir)
    (a1,) = model.analyze(astronaut)
    (a2,) = model.analyze(astronaut.copy())
    (g,) = model.analyze(grace_hopper)
    assert a1.embedding is not None and a2.embedding is not None and g.embedding is not None
    assert np.array_equal(a1.embedding, a2.embedding)
    assert float(a1.embedding @ g.embedding) < 0.99
    assert model.analyze(coffee) == []
    assert model.analyze(np.zeros((300, 400, 3), np.uint8)) == []


def test_weights_digest_follows_the_files(insightface_dir: Path, tmp_path: Path) -> None:
    from tests.models import tiny

    other = tiny.insightface_pack(tmp_path / "other", seed=1)  # a different recogniser
    assert _analyzer(other).info.version != _analyzer(insightface_dir).info.version


def test_concurrent_calls_agree(insightface_dir: Path, astronaut: np.ndarray) -> None:
    model = _analyzer(insightface_dir)
    expected = [f.bbox for f in model.analyze(astronaut)]
    results: list[list[tuple[int, int, int, int]]] = []
    threads = [
        threading.Thread(target=lambda: results.append([f.bbox for f in model.analyze(astronaut)]))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 3


def test_never_downloads_and_refuses_incomplete_packs(tmp_path: Path, insightface_dir: Path) -> None:
    registry = builtin_registry()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no .onnx"):
        registry.create("face", "insightface", {"model_dir": str(tmp_path / "empty")})
    with pytest.raises(ModelError, match="not a directory"):
        registry.create("face", "insightface", {"model_dir": "buffalo_l"})  # a pack *name* is never fetched
    det_only = tmp_path / "det_only"
    det_only.mkdir()
    (det_only / "det_tiny.onnx").write_bytes((insightface_dir / "det_tiny.onnx").read_bytes())
    with pytest.raises(ModelError, match="no recognition"):
        registry.create("face", "insightface", {"model_dir": str(det_only)})


def test_faces_reach_the_findings(insightface_dir: Path, astronaut: np.ndarray) -> None:
    policy = policy_with(
        {}, [], face_model={"adapter": "insightface", "options": {"model_dir": str(insightface_dir)}}
    )
    result = run_check(policy, [astronaut])
    (face,) = result.facts.faces
    assert face.media_index == 0 and 0.9 < face.det_score <= 1.0
    assert result.verdict.decision == "allow"
