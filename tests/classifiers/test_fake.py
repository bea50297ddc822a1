"""Why: the fakes stand in for real models in gateway tests (unsafe renders, people, failing
models), so their colour rules and fault hooks are a contract of their own."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from classifiers import FaultHook, ModelError, draw_fake_face, fake_face_colour, fake_face_embedding
from classifiers.fake import FakeFaceAnalyzer, FakeNsfwClassifier


def _solid(rgb: tuple[int, int, int]) -> np.ndarray:
    return np.full((32, 48, 3), rgb, dtype=np.uint8)


def test_fake_nsfw_follows_colour(coffee: np.ndarray) -> None:
    model = FakeNsfwClassifier()
    red, yellow, other = model.classify([_solid((230, 20, 20)), _solid((230, 230, 20)), coffee])
    assert red["unsafe"] == 0.99
    assert (yellow["suggestive"], yellow["unsafe"]) == (0.7, 0.5)
    assert other == {"unsafe": 0.01, "suggestive": 0.01}


def test_fake_nsfw_uses_the_mean_colour() -> None:
    image = _solid((230, 20, 20))
    image[:, :30] = (0, 0, 0)  # most of the image dark: the mean is no longer red
    (scores,) = FakeNsfwClassifier().classify([image])
    assert scores["unsafe"] == 0.01


def test_fault_hook_raises_and_recovers_at_run_time() -> None:
    hook = FaultHook()
    model = FakeNsfwClassifier({"faults": hook})
    image = _solid((230, 20, 20))
    assert model.classify([image])[0]["unsafe"] == 0.99
    model.faults.raise_error = True
    with pytest.raises(ModelError, match="injected"):
        model.classify([image])
    hook.raise_error = False
    assert model.classify([image])[0]["unsafe"] == 0.99
    assert hook.calls == 3


def test_fault_hook_sleeps_before_answering() -> None:
    slept: list[float] = []
    model = FakeFaceAnalyzer({"faults": FaultHook(sleeper=slept.append)})
    assert model.analyze(_solid((0, 0, 0))) == [] and slept == []
    model.faults.sleep_s = 2.5
    model.analyze(_solid((0, 0, 0)))
    assert slept == [2.5]


def test_fault_hook_sleep_holds_the_call_until_released() -> None:
    release = threading.Event()
    model = FakeNsfwClassifier({"faults": FaultHook(sleep_s=60.0, sleeper=release.wait)})
    results: list[list[dict[str, float]]] = []
    worker = threading.Thread(target=lambda: results.append(model.classify([_solid((230, 20, 20))])))
    worker.start()
    assert results == []  # the call cannot have returned: nothing released it yet
    release.set()
    worker.join()
    assert results[0][0]["unsafe"] == 0.99


def test_face_fault_hook_raises() -> None:
    model = FakeFaceAnalyzer({"faults": FaultHook(raise_error=True)})
    with pytest.raises(ModelError):
        model.analyze(_solid((0, 0, 0)))


def test_fake_faces_found_with_identity_embeddings(coffee: np.ndarray) -> None:
    image = coffee.copy()
    draw_fake_face(image, identity=7, x=300, y=200, size=40)
    draw_fake_face(image, identity=7, x=20, y=20, size=24)
    draw_fake_face(image, identity=9, x=500, y=300, size=30)
    faces = FakeFaceAnalyzer().analyze(image)
    assert [f.bbox for f in faces] == [(20, 20, 44, 44), (300, 200, 340, 240), (500, 300, 530, 330)]
    a, b, c = (f.embedding for f in faces)
    assert a is not None and b is not None and c is not None
    assert np.array_equal(a, b) and np.array_equal(a, fake_face_embedding(7))
    assert abs(float(a @ c)) < 0.5


def test_fake_faces_ignore_non_squares_and_small_blocks() -> None:
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    image[10:20, 10:40] = fake_face_colour(3)  # a bar, not a square
    image[50:55, 50:55] = fake_face_colour(4)  # too small
    image[70:90, 70:90] = fake_face_colour(5)
    image[75, 75] = (1, 2, 3)  # a hole: not solid
    assert FakeFaceAnalyzer().analyze(image) == []
    with pytest.raises(ValueError):
        draw_fake_face(image, identity=1, x=0, y=0, size=4)
    with pytest.raises(ValueError):
        fake_face_colour(256)


def test_fake_identities_are_nearly_orthogonal() -> None:
    embs = np.stack([fake_face_embedding(i) for i in range(256)])
    sims = embs @ embs.T
    np.fill_diagonal(sims, 0.0)
    assert np.allclose(np.linalg.norm(embs, axis=1), 1.0, atol=1e-6)
    assert float(np.abs(sims).max()) <= 0.36
