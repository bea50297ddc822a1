"""Why: a policy names models; the registry is where a wrong name, a duplicate or a missing
package must fail loudly instead of silently dropping a check (fail closed)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest

import classifiers
from classifiers import (
    FaceAnalyzer,
    FaultHook,
    ModelError,
    ModelInfo,
    ModelRegistry,
    NsfwClassifier,
    UnknownModelError,
    builtin_registry,
)
from classifiers.fake import FakeNsfwClassifier


def test_builtin_names_per_family() -> None:
    registry = builtin_registry()
    assert registry.names("nsfw") == ("fake", "hf", "nudenet", "nudenet-torch", "openclip", "opennsfw",
                                      "opennsfw-torch")
    assert registry.names("face") == ("dlib", "fake", "insightface", "mtcnn+dlib")
    assert registry.names("text") == ("minilm",)
    assert registry.names("textcls") == ("hf-text",)
    assert registry.names("image") == ("openclip",)
    assert registry.names("hash") == ("pdq",)
    assert registry.names("voice") == ("fake", "resemblyzer")
    assert registry.has("nsfw", "nudenet") and not registry.has("face", "nudenet")


def test_registrations_say_where_weights_come_from() -> None:
    registry = builtin_registry()
    local = {(s.family, s.name) for s in registry.adapters() if s.weights == "local"}
    assert local == {("nsfw", "openclip"), ("image", "openclip"), ("nsfw", "hf"), ("textcls", "hf-text"),
                     ("face", "insightface")}
    extras = {(s.family, s.name): s.extra for s in registry.adapters() if s.extra}
    assert extras == {("nsfw", "openclip"): "extras", ("image", "openclip"): "extras",
                      ("nsfw", "nudenet-torch"): "extras", ("nsfw", "opennsfw-torch"): "extras",
                      ("face", "mtcnn+dlib"): "extras", ("face", "insightface"): "insightface"}
    assert registry.describe("nsfw", "nudenet").weights == "package"
    with pytest.raises(UnknownModelError):
        registry.describe("nsfw", "nope")
    with pytest.raises(ValueError, match="weights"):
        registry.register("nsfw", "odd", FakeNsfwClassifier, weights="cloud")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("family", "name"), [("nsfw", "openclip"), ("image", "openclip"), ("nsfw", "hf"), ("textcls", "hf-text"),
                         ("face", "insightface")],
)
def test_local_weight_adapters_need_an_existing_model_dir(family: str, name: str, tmp_path: Any) -> None:
    registry = builtin_registry()
    with pytest.raises(ModelError, match="model_dir.*required"):
        registry.create(family, name)
    with pytest.raises(ModelError, match="not a directory"):
        registry.create(family, name, {"model_dir": str(tmp_path / "missing")})


def test_fakes_can_be_left_out() -> None:
    registry = builtin_registry(include_fakes=False)
    assert "fake" not in registry.names("nsfw") and "fake" not in registry.names("face")
    with pytest.raises(UnknownModelError):
        registry.create("nsfw", "fake")


def test_registries_are_independent() -> None:
    first, second = builtin_registry(), builtin_registry()
    first.register("nsfw", "extra", FakeNsfwClassifier)
    assert first.has("nsfw", "extra") and not second.has("nsfw", "extra")


def test_unknown_name_lists_the_registered_names() -> None:
    with pytest.raises(UnknownModelError) as err:
        builtin_registry().create("nsfw", "nudenett")
    message = str(err.value)
    assert "nsfw" in message and "'nudenett'" in message
    for known in ("fake", "nudenet", "opennsfw"):
        assert known in message
    assert err.value.known == ("fake", "hf", "nudenet", "nudenet-torch", "openclip", "opennsfw", "opennsfw-torch")
    assert isinstance(err.value, ModelError) and isinstance(err.value, LookupError)


def test_unknown_family() -> None:
    registry = builtin_registry()
    with pytest.raises(UnknownModelError, match="gesture"):
        registry.create("gesture", "openpose")
    with pytest.raises(ValueError, match="families"):
        registry.register("gesture", "openpose", FakeNsfwClassifier)


def test_duplicate_registration_refused() -> None:
    registry = builtin_registry()
    with pytest.raises(ValueError, match="already registered"):
        registry.register("nsfw", "nudenet", FakeNsfwClassifier)
    registry.register("face", "nudenet", lambda options: None)  # same name, other family: fine
    assert registry.has("face", "nudenet")


def test_missing_package_is_a_clear_model_error() -> None:
    def factory(options: Mapping[str, Any]) -> Any:
        import consentgate_no_such_model_package  # noqa: F401

        raise AssertionError("unreachable")

    registry = ModelRegistry()
    registry.register("nsfw", "ghost", factory)
    with pytest.raises(ModelError, match="ghost.*consentgate_no_such_model_package"):
        registry.create("nsfw", "ghost")


def test_factory_must_return_the_family_protocol() -> None:
    class NotAClassifier:
        info = ModelInfo("odd", "1")

    registry = ModelRegistry()
    registry.register("nsfw", "odd", lambda options: NotAClassifier())
    with pytest.raises(ModelError, match="does not implement NsfwClassifier"):
        registry.create("nsfw", "odd")


def test_options_are_passed_and_checked() -> None:
    registry = builtin_registry()
    hook = FaultHook()
    model = registry.nsfw("fake", {"faults": hook})
    assert isinstance(model, NsfwClassifier) and model.faults is hook  # type: ignore[attr-defined]
    with pytest.raises(ModelError, match="unknown option.*thresold"):
        registry.create("nsfw", "fake", {"thresold": 0.5})
    with pytest.raises(ModelError, match="threads"):
        registry.create("nsfw", "nudenet", {"threads": "two"})
    with pytest.raises(ModelError, match="detector"):
        registry.create("face", "dlib", {"detector": "mtcnn"})
    with pytest.raises(ModelError, match="upsample"):
        registry.create("face", "dlib", {"upsample": -1})


def test_typed_helpers_return_protocol_instances() -> None:
    registry = builtin_registry()
    assert isinstance(registry.face("fake"), FaceAnalyzer)
    assert registry.nsfw("fake").info == ModelInfo("fake", "fake-1")


def test_public_surface_is_pinned() -> None:
    assert sorted(classifiers.__all__) == sorted(
        [
            "FAMILIES",
            "DetectedFace",
            "FaceAnalyzer",
            "Factory",
            "FaultHook",
            "ModelError",
            "ModelInfo",
            "ModelRegistry",
            "NsfwClassifier",
            "ImageEmbedder",
            "PerceptualHasher",
            "TextClassifier",
            "TextEmbedder",
            "SpeechSegment",
            "TwoStageFaceAnalyzer",
            "UnknownModelError",
            "VoiceEmbedder",
            "builtin_registry",
            "draw_fake_face",
            "fake_face_colour",
            "fake_voice_embedding",
            "fake_voice_samples",
            "fake_face_embedding",
        ]
    )
    for name in classifiers.__all__:
        assert hasattr(classifiers, name)


def test_importing_the_package_loads_no_model_library() -> None:
    code = (
        "import sys, classifiers; r = classifiers.builtin_registry(); "
        "heavy = {'onnxruntime', 'dlib', 'torch', 'sentence_transformers', 'pdqhash', 'cv2', 'transformers', "
        "'open_clip', 'insightface', 'facenet_pytorch', 'torchvision'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    assert out.stdout.strip() == "[]"
