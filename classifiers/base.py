"""Why: one small Protocol per swappable model family, so a better model is a policy edit.

Voice adapters take mono float32 samples at their `sample_rate` (see `VoiceEmbedder`).

Every adapter reports `info` (registered name + a digest of its weights) so each finding can be
replayed and explained. Images are RGB uint8 numpy arrays (H, W, 3), already decoded, oriented
and resized once by `gateway.media` to the working size; adapters resize further to their own
input size themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: importing the contracts loads no numpy (CLI start-up, #22.6)
    import numpy as np


@dataclass(frozen=True)
class ModelInfo:
    """`name` is the registered adapter name; `version` the sha256 prefix (16 hex) of the weights."""

    name: str
    version: str


@dataclass(frozen=True)
class DetectedFace:
    """One face: bbox in pixels of the image given (x0, y0, x1, y1), detector score in [0, 1]
    (or the detector's own scale, documented per adapter), landmarks [(x, y), ...] and an
    L2-normalised float32 embedding (None when the analyzer only detects, or cannot embed this
    face). `unidentified` says why a face the analyzer saw cannot be identified with confidence
    (e.g. "profile", "no landmarks"); the gateway never treats such a face as "nobody enrolled"."""

    bbox: tuple[int, int, int, int]
    det_score: float
    landmarks: tuple[tuple[float, float], ...] = ()
    embedding: np.ndarray | None = field(default=None, compare=False)
    unidentified: str | None = None


@runtime_checkable
class NsfwClassifier(Protocol):
    """Scores images for unsafe content. `labels` lists every label `classify` may return."""

    info: ModelInfo
    labels: tuple[str, ...]

    def classify(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        """One {label: score in [0, 1]} per image, same order. Batched where the model allows."""
        ...


@runtime_checkable
class NsfwWithFaces(NsfwClassifier, Protocol):
    """An NSFW model that also locates faces in the same pass (NudeNet's FACE_* boxes): the gateway
    uses those boxes as a second face detector, so a face the face analyzer misses (turned, profile,
    occluded) is still seen — as `unidentified` when it cannot be identified."""

    def classify_with_faces(
        self, images: Sequence[np.ndarray]
    ) -> tuple[list[dict[str, float]], list[list[tuple[tuple[int, int, int, int], float]]]]:
        """`classify(images)` and, per image, the face boxes (x0, y0, x1, y1 in its pixels, score)."""
        ...


@runtime_checkable
class FaceAnalyzer(Protocol):
    """Detects faces and (for analyzers with an embedder) embeds them for matching."""

    info: ModelInfo
    embedding_dim: int

    def analyze(self, image: np.ndarray) -> list[DetectedFace]: ...


@runtime_checkable
class TwoStageFaceAnalyzer(FaceAnalyzer, Protocol):
    """A face analyzer whose detection and embedding can be called apart, so a caller that
    follows faces over time (video) embeds a face once per track instead of once per frame.
    `analyze(image)` must equal `embed(image, detect(image))`."""

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """The faces (bbox, score, landmarks), without embeddings."""
        ...

    def embed(self, image: np.ndarray, faces: Sequence[DetectedFace]) -> list[DetectedFace]:
        """The same faces, same order, with their embeddings."""
        ...


@runtime_checkable
class TextEmbedder(Protocol):
    """Embeds prompt text for semantic concept matching; rows are L2-normalised float32."""

    info: ModelInfo
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class TextClassifier(Protocol):
    """Classifies prompt text into labels (family "textcls", e.g. a transformers
    text-classification model). `labels` lists every label `classify` may return."""

    info: ModelInfo
    labels: tuple[str, ...]

    def classify(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """One {label: score in [0, 1]} per text, same order."""
        ...


@runtime_checkable
class ImageEmbedder(Protocol):
    """Embeds whole images (family "image", e.g. CLIP) for near-duplicate search and model
    comparison; rows are L2-normalised float32 of width `dim`."""

    info: ModelInfo
    dim: int

    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


@runtime_checkable
class PerceptualHasher(Protocol):
    """Perceptual hashes for hash lists. `hashes` returns the hash of the image and of its
    dihedral transforms (flips, rotations) as hex strings, the first being the identity."""

    info: ModelInfo
    bits: int

    def hashes(self, image: np.ndarray) -> list[str]: ...


@dataclass(frozen=True)
class SpeechSegment:
    """A stretch of voice activity, in seconds from the start of the samples given."""

    start: float
    end: float


@runtime_checkable
class VoiceEmbedder(Protocol):
    """Speaker embeddings for voice consent (family "voice").

    Audio is mono float32 in [-1, 1] at `sample_rate` Hz (the gateway's audio intake decodes and
    resamples once). `speech` finds voice activity; `partials` embeds fixed windows of
    `partial_s` seconds every `step_s` seconds over the samples given (the caller cuts speech
    out first); `embed` gives one utterance embedding per clip (the L2-normalised mean of its
    partials). Every row is L2-normalised float32 of width `dim`; same speaker -> high cosine."""

    info: ModelInfo
    dim: int
    sample_rate: int
    partial_s: float
    step_s: float

    def speech(self, samples: np.ndarray) -> list[SpeechSegment]: ...

    def partials(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(starts in seconds, shape (n,); embeddings, shape (n, dim)). A clip shorter than one
        window is zero-padded to one window; empty samples give n = 0."""
        ...

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Shape (len(clips), dim); a clip with no samples is a ModelError."""
        ...


class ModelError(RuntimeError):
    """Raised by an adapter that cannot load or run; the pipeline turns it into a fail-closed deny."""
