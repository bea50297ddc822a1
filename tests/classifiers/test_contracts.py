"""Why: every adapter of a family must honour the same Protocol, whatever model is behind it;
one contract class per family runs against every registered name, so a new adapter gets the
whole suite by being registered.

Adapters whose weights ship in a package run here; an adapter from an optional install (e.g.
`mtcnn+dlib`, extras venv) is skipped with a reason where its library is absent. Adapters that load
weights from a local `model_dir` run the same checks in tests/models on tiny models they build."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from tests.classifiers.conftest import ModelCache


from classifiers import (
    FaceAnalyzer,
    NsfwClassifier,
    PerceptualHasher,
    TextEmbedder,
    VoiceEmbedder,
    builtin_registry,
    draw_fake_face,
    fake_voice_samples,
)
from tests.support.speech import SENTENCES, speech

_REGISTRY = builtin_registry()
_EXTRA_MODULES = {
    "extras": ("torchvision", "facenet_pytorch", "open_clip"),
    "insightface": ("insightface", "onnx"),
}


def _contract_names(family: str) -> list[object]:
    """Every package-weight adapter of `family`; optional ones skip where their install is absent."""
    import importlib.util

    out: list[object] = []
    for name in _REGISTRY.names(family):
        spec = _REGISTRY.describe(family, name)
        if spec.weights != "package":
            continue
        missing = [m for m in _EXTRA_MODULES.get(spec.extra or "", ()) if importlib.util.find_spec(m) is None]
        reason = f"{family}/{name} needs the [{spec.extra}] install ({', '.join(missing)} missing here)"
        out.append(pytest.param(name, marks=pytest.mark.skipif(bool(missing), reason=reason)))
    return out


def _small_odd(seed: int = 3) -> np.ndarray:
    """A non-square, odd-sized noise image: exercises padding and resizing paths."""
    return np.random.default_rng(seed).integers(0, 256, size=(61, 97, 3), dtype=np.uint8)


def _red(height: int = 64, width: int = 80) -> np.ndarray:
    return np.full((height, width, 3), (230, 20, 20), dtype=np.uint8)


def _with_fake_faces(image: np.ndarray) -> np.ndarray:
    out = image.copy()
    draw_fake_face(out, identity=7, x=8, y=420, size=48)
    draw_fake_face(out, identity=200, x=440, y=8, size=40)
    return out


@pytest.mark.parametrize("name", _contract_names("nsfw"))
class TestNsfwContract:
    def test_shape_labels_and_range(
        self, models: ModelCache, name: str, astronaut: np.ndarray, coffee: np.ndarray
    ) -> None:
        model = models.get("nsfw", name)
        assert isinstance(model, NsfwClassifier)
        assert model.info.name == name and model.info.version
        assert len(set(model.labels)) == len(model.labels) > 0
        images = [astronaut, coffee, _small_odd(), _red()]
        results = model.classify(images)
        assert len(results) == len(images)
        for scores in results:
            assert set(scores) <= set(model.labels)
            assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in scores.values())

    def test_empty_batch(self, models: ModelCache, name: str) -> None:
        assert models.get("nsfw", name).classify([]) == []

    def test_deterministic_and_batch_equals_single(
        self, models: ModelCache, name: str, astronaut: np.ndarray, coffee: np.ndarray
    ) -> None:
        model = models.get("nsfw", name)
        images = [astronaut, coffee, _small_odd()]
        batched = model.classify(images)
        assert model.classify(images) == batched
        for image, expected in zip(images, batched, strict=True):
            (single,) = model.classify([image])
            assert set(single) == set(expected)
            for label in single:
                assert single[label] == pytest.approx(expected[label], abs=1e-4)

    def test_refuses_non_rgb(self, models: ModelCache, name: str) -> None:
        from classifiers import ModelError

        with pytest.raises(ModelError):
            models.get("nsfw", name).classify([np.zeros((10, 10), dtype=np.uint8)])


@pytest.mark.parametrize("name", _contract_names("face"))
class TestFaceContract:
    def test_faces_well_formed(self, models: ModelCache, name: str, astronaut: np.ndarray) -> None:
        model = models.get("face", name)
        assert isinstance(model, FaceAnalyzer)
        image = _with_fake_faces(astronaut)
        faces = model.analyze(image)
        assert faces, "every face analyzer finds something here (a real face and two fake ones)"
        h, w = image.shape[:2]
        for face in faces:
            x0, y0, x1, y1 = face.bbox
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert 0.0 <= face.det_score <= 1.0
            for lx, ly in face.landmarks:
                assert -w * 0.1 <= lx <= w * 1.1 and -h * 0.1 <= ly <= h * 1.1
            emb = face.embedding
            assert emb is not None
            assert emb.dtype == np.float32 and emb.shape == (model.embedding_dim,)
            assert float(np.linalg.norm(emb)) == pytest.approx(1.0, abs=1e-5)

    def test_no_faces_in_coffee(self, models: ModelCache, name: str, coffee: np.ndarray) -> None:
        assert models.get("face", name).analyze(coffee) == []

    def test_deterministic(self, models: ModelCache, name: str, astronaut: np.ndarray) -> None:
        model = models.get("face", name)
        image = _with_fake_faces(astronaut)
        first, second = model.analyze(image), model.analyze(image)
        assert [f.bbox for f in first] == [f.bbox for f in second]
        for a, b in zip(first, second, strict=True):
            assert a.embedding is not None and b.embedding is not None
            assert np.array_equal(a.embedding, b.embedding)

    def test_concurrent_calls_agree(self, models: ModelCache, name: str, astronaut: np.ndarray) -> None:
        model = models.get("face", name)
        image = _with_fake_faces(astronaut)
        expected = [f.bbox for f in model.analyze(image)]
        results: list[list[tuple[int, int, int, int]]] = []

        def work() -> None:
            results.append([f.bbox for f in model.analyze(image)])

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [expected] * 3


@pytest.mark.parametrize("name", _contract_names("text"))
class TestTextContract:
    TEXTS = ("explicit nudity", "a cup of coffee on a table", "Ünïcödé prompt ✨", "")

    def test_rows_normalised_float32(self, models: ModelCache, name: str) -> None:
        model = models.get("text", name)
        assert isinstance(model, TextEmbedder)
        out = model.embed(list(self.TEXTS))
        assert out.dtype == np.float32 and out.shape == (len(self.TEXTS), model.dim)
        assert np.allclose(np.linalg.norm(out[:3], axis=1), 1.0, atol=1e-5)

    def test_empty_input(self, models: ModelCache, name: str) -> None:
        model = models.get("text", name)
        assert models.get("text", name).embed([]).shape == (0, model.dim)

    def test_deterministic_and_batch_equals_single(self, models: ModelCache, name: str) -> None:
        model = models.get("text", name)
        batched = model.embed(list(self.TEXTS[:3]))
        assert np.array_equal(model.embed(list(self.TEXTS[:3])), batched)
        for i, text in enumerate(self.TEXTS[:3]):
            assert np.allclose(model.embed([text])[0], batched[i], atol=1e-5)


@pytest.mark.parametrize("name", _contract_names("hash"))
class TestHashContract:
    def test_eight_hex_hashes_identity_first(
        self, models: ModelCache, name: str, astronaut: np.ndarray
    ) -> None:
        model = models.get("hash", name)
        assert isinstance(model, PerceptualHasher)
        hashes = model.hashes(astronaut)
        assert len(hashes) == 8
        for h in hashes:
            assert len(h) == model.bits // 4
            int(h, 16)
        assert len(set(hashes)) > 1

    def test_deterministic_and_content_dependent(
        self, models: ModelCache, name: str, astronaut: np.ndarray, coffee: np.ndarray
    ) -> None:
        model = models.get("hash", name)
        assert model.hashes(astronaut) == model.hashes(astronaut.copy())
        assert model.hashes(astronaut)[0] != model.hashes(coffee)[0]


def _voice_clips() -> list[np.ndarray]:
    """Speech (espeak-ng) that the real encoders hear, a fake "voice" (a tone) that the fake
    hears, one shorter than a window, and 1.5 s of speech between two seconds of silence."""
    silence = np.zeros(32_000, dtype=np.float32)
    return [speech(SENTENCES[0]), fake_voice_samples(9, 4.0), fake_voice_samples(3, 0.5),
            np.concatenate([silence, speech(SENTENCES[1])[:24_000], silence])]


@pytest.mark.parametrize("name", _contract_names("voice"))
class TestVoiceContract:
    def test_rows_normalised_float32(self, models: ModelCache, name: str) -> None:
        model = models.get("voice", name)
        assert isinstance(model, VoiceEmbedder)
        assert model.info.name == name and model.info.version
        assert model.sample_rate == 16_000 and 0 < model.step_s <= model.partial_s
        clips = _voice_clips()
        out = model.embed(clips)
        assert out.dtype == np.float32 and out.shape == (len(clips), model.dim)
        assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
        assert model.embed([]).shape == (0, model.dim)

    def test_partials_cover_the_clip(self, models: ModelCache, name: str) -> None:
        model = models.get("voice", name)
        clip = _voice_clips()[0]
        starts, rows = model.partials(clip)
        duration = len(clip) / model.sample_rate
        assert rows.dtype == np.float32 and rows.shape == (len(starts), model.dim) and len(starts) >= 3
        assert starts[0] == 0.0 and np.all(np.diff(starts) > 0)
        assert starts[-1] + model.partial_s >= duration - model.step_s
        assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
        short_starts, short_rows = model.partials(_voice_clips()[2])
        assert list(short_starts) == [0.0] and short_rows.shape == (1, model.dim)
        empty_starts, empty_rows = model.partials(np.zeros(0, dtype=np.float32))
        assert len(empty_starts) == 0 and empty_rows.shape == (0, model.dim)

    def test_speech_is_found_where_it_is(self, models: ModelCache, name: str) -> None:
        model = models.get("voice", name)
        assert model.speech(np.zeros(48_000, dtype=np.float32)) == []
        for clip in _voice_clips()[:2]:  # the real encoders hear speech, the fake hears a tone: one of each
            segments = model.speech(clip)
            duration = len(clip) / model.sample_rate
            assert all(0 <= s.start < s.end <= duration + 1e-6 for s in segments)
            assert all(a.end <= b.start for a, b in zip(segments, segments[1:], strict=False))
        padded = _voice_clips()[3]
        found = model.speech(padded)
        if found:  # a model hears speech there, and only around the middle 1.5 s
            assert found[0].start >= 1.5 and found[-1].end <= 4.0

    def test_deterministic_and_batch_equals_single(self, models: ModelCache, name: str) -> None:
        model = models.get("voice", name)
        clips = _voice_clips()
        batched = model.embed(clips)
        assert np.array_equal(model.embed(clips), batched)
        for i, clip in enumerate(clips):
            assert np.allclose(model.embed([clip])[0], batched[i], atol=1e-5)

    def test_refuses_wrong_samples(self, models: ModelCache, name: str) -> None:
        from classifiers import ModelError

        model = models.get("voice", name)
        for bad in (np.zeros((2, 16_000), dtype=np.float32), np.zeros(16_000, dtype=np.int16),
                    np.full(16_000, np.nan, dtype=np.float32)):
            with pytest.raises(ModelError):
                model.embed([bad])
        with pytest.raises(ModelError):
            model.embed([np.zeros(0, dtype=np.float32)])

    def test_concurrent_calls_agree(self, models: ModelCache, name: str) -> None:
        model = models.get("voice", name)
        clip = _voice_clips()[0]
        expected = model.embed([clip])
        results: list[np.ndarray] = []
        threads = [threading.Thread(target=lambda: results.append(model.embed([clip]))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 3 and all(np.allclose(r, expected, atol=1e-5) for r in results)
