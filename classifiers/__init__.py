"""Model families (one Protocol each) and their adapters, registered explicitly by name.

Build adapters through a registry (`builtin_registry().create(family, name, options)`); the
adapter classes are importable from their modules (`classifiers.nsfw_nudenet`, ...) but are not
imported here, so importing `classifiers` loads no model package (nor numpy: the fakes' helpers
load on first use).
"""

from typing import TYPE_CHECKING, Any

from classifiers.base import (
    DetectedFace,
    FaceAnalyzer,
    ImageEmbedder,
    ModelError,
    ModelInfo,
    NsfwClassifier,
    PerceptualHasher,
    SpeechSegment,
    TextClassifier,
    TextEmbedder,
    TwoStageFaceAnalyzer,
    VoiceEmbedder,
)
from classifiers.registry import FAMILIES, Factory, ModelRegistry, UnknownModelError, builtin_registry

if TYPE_CHECKING:
    from classifiers.fake import (
        FaultHook,
        draw_fake_face,
        fake_face_colour,
        fake_face_embedding,
        fake_voice_embedding,
        fake_voice_samples,
    )

_FAKES = frozenset({"FaultHook", "draw_fake_face", "fake_face_colour", "fake_face_embedding",
                    "fake_voice_embedding", "fake_voice_samples"})


def __getattr__(name: str) -> Any:
    """The fakes' helpers load on first use (they need numpy; the CLI's model-free commands do not)."""
    if name in _FAKES:
        from classifiers import fake

        return getattr(fake, name)
    raise AttributeError(f"module 'classifiers' has no attribute {name!r}")

__all__ = [
    "FAMILIES",
    "DetectedFace",
    "FaceAnalyzer",
    "Factory",
    "FaultHook",
    "ImageEmbedder",
    "ModelError",
    "ModelInfo",
    "ModelRegistry",
    "NsfwClassifier",
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
    "fake_face_embedding",
    "fake_voice_embedding",
    "fake_voice_samples",
]
