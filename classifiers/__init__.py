"""Model families (one Protocol each) and their adapters, registered explicitly by name.

Build adapters through a registry (`builtin_registry().create(family, name, options)`); the
adapter classes are importable from their modules (`classifiers.nsfw_nudenet`, ...) but are not
imported here, so importing `classifiers` loads no model package.
"""

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
from classifiers.fake import (
    FaultHook,
    draw_fake_face,
    fake_face_colour,
    fake_face_embedding,
    fake_voice_embedding,
    fake_voice_samples,
)
from classifiers.registry import FAMILIES, Factory, ModelRegistry, UnknownModelError, builtin_registry

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
