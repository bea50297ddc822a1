"""Why: the unsafe and consent paths must be testable without explicit imagery or slow models.

`FakeNsfwClassifier` ("fake" in the nsfw family) scores an image by its mean colour:
mostly pure red reads as unsafe, mostly pure yellow as suggestive. `FakeFaceAnalyzer` ("fake"
in the face family) finds "faces" drawn as solid squares of a reserved colour family; the exact
colour is the person's identity. Both carry a mutable `FaultHook` so tests can make a model fail
or stall at run time (fail-closed and timeout paths).

Drawing a person for the fake face analyzer::

    from classifiers.fake import draw_fake_face
    draw_fake_face(image, identity=7, x=40, y=40, size=64)   # "person 7", in place

`identity` is 0..255 (the colour is `fake_face_colour(identity)` = (0, identity, 255)); the same
identity always embeds to the same unit vector (`fake_face_embedding`), different identities to
nearly orthogonal ones (|cosine| <= 0.36 over all pairs), except `UNIDENTIFIABLE` (255): found,
never embedded (a face seen but not identifiable). A face is a solid square at least `MIN_FACE_SIDE`
pixels wide; other shapes of that colour are ignored. Save such images losslessly (PNG): JPEG
changes the exact colour.

`FakeVoiceEmbedder` ("fake" in the voice family) hears a "voice" as a pure tone: identity
0..255 is a sine at `fake_voice_frequency(identity)` = 200 + 10 × identity Hz
(`fake_voice_samples` makes one). Each 1.6 s window embeds to `fake_voice_embedding(identity)`
of its loudest frequency; a quiet window (RMS < 0.01) is not speech and embeds to the
embedding of identity -1 ("no one"). Speech = the stretches louder than that.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from classifiers._common import Options, check_rgb
from classifiers.base import DetectedFace, ModelError, ModelInfo, SpeechSegment

FAKE_VERSION = "fake-1"
FAKE_FACE_DIM = 128
FAKE_VOICE_DIM = 64
FAKE_VOICE_RATE = 16_000
FAKE_VOICE_QUIET = 0.01
MIN_FACE_SIDE = 8
UNIDENTIFIABLE = 255  # this identity is found but never embedded: the `unidentified` path


@dataclass
class FaultHook:
    """Mutable at run time: `raise_error` makes the next calls raise ModelError; `sleep_s` makes
    them sleep first (to exercise timeouts). `calls` counts calls (handy for cache tests).
    `sleeper` is what sleeps (time.sleep; a test may pass a recorder or an Event.wait)."""

    raise_error: bool = False
    sleep_s: float = 0.0
    calls: int = 0
    sleeper: Callable[[float], object] = field(default=time.sleep, repr=False)

    def fire(self, adapter: str) -> None:
        self.calls += 1
        if self.sleep_s > 0:
            self.sleeper(self.sleep_s)
        if self.raise_error:
            raise ModelError(f"{adapter}: injected fault")


def _faults(options: Options) -> FaultHook:
    hook = options.get("faults", None, (FaultHook, type(None)))
    return hook if hook is not None else FaultHook()


class FakeNsfwClassifier:
    """Deterministic colour-driven NSFW scores; labels ("unsafe", "suggestive")."""

    labels = ("unsafe", "suggestive")

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "fake") -> None:
        opts = Options(name, options, {"faults"})
        self.info = ModelInfo(name=name, version=FAKE_VERSION)
        self.faults = _faults(opts)

    def classify(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        self.faults.fire(self.info.name)
        return [self._score(check_rgb(img)) for img in images]

    @staticmethod
    def _score(image: np.ndarray) -> dict[str, float]:
        r, g, b = (float(v) for v in image.reshape(-1, 3).mean(axis=0))
        if r > 200 and g < 60 and b < 60:
            return {"unsafe": 0.99, "suggestive": 0.01}
        if r > 200 and g > 200 and b < 60:
            return {"unsafe": 0.5, "suggestive": 0.7}
        return {"unsafe": 0.01, "suggestive": 0.01}


def fake_face_colour(identity: int) -> tuple[int, int, int]:
    if not 0 <= identity <= 255:
        raise ValueError("fake face identity must be in 0..255")
    return (0, identity, 255)


def fake_face_embedding(identity: int) -> np.ndarray:
    """The unit float32 embedding the fake analyzer gives `identity`."""
    seed = int.from_bytes(hashlib.sha256(f"fake-face-{identity}".encode()).digest()[:8], "big")
    vec = np.random.default_rng(seed).standard_normal(FAKE_FACE_DIM).astype(np.float32)
    return vec / np.float32(np.linalg.norm(vec))


def draw_fake_face(image: np.ndarray, identity: int, x: int, y: int, size: int) -> np.ndarray:
    """Paint person `identity` as a solid square at (x, y) in place; returns the image."""
    if size < MIN_FACE_SIDE:
        raise ValueError(f"a fake face is at least {MIN_FACE_SIDE} px wide")
    image[y : y + size, x : x + size] = fake_face_colour(identity)
    return image


class FakeFaceAnalyzer:
    """Finds solid squares of colour (0, identity, 255); 128-d embedding derived from identity."""

    embedding_dim = FAKE_FACE_DIM

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "fake") -> None:
        opts = Options(name, options, {"faults"})
        self.info = ModelInfo(name=name, version=FAKE_VERSION)
        self.faults = _faults(opts)

    def analyze(self, image: np.ndarray) -> list[DetectedFace]:
        self.faults.fire(self.info.name)
        img = check_rgb(image)
        from scipy import ndimage

        reserved = (img[..., 0] == 0) & (img[..., 2] == 255)
        faces: list[DetectedFace] = []
        for identity in np.unique(img[..., 1][reserved]):
            mask = reserved & (img[..., 1] == identity)
            labelled, _count = ndimage.label(mask)
            for sl in ndimage.find_objects(labelled):
                if sl is None:
                    continue
                y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
                w, h = x1 - x0, y1 - y0
                if w != h or w < MIN_FACE_SIDE or not mask[y0:y1, x0:x1].all():
                    continue
                faces.append(_fake_face(int(identity), x0, y0, x1, y1))
        faces.sort(key=lambda f: (f.bbox[1], f.bbox[0]))
        return faces


def _fake_face(identity: int, x0: int, y0: int, x1: int, y1: int) -> DetectedFace:
    if identity == UNIDENTIFIABLE:
        return DetectedFace(bbox=(x0, y0, x1, y1), det_score=0.9, unidentified="fake: a face seen but not embeddable")
    w, h = x1 - x0, y1 - y0
    landmarks = (
        (x0 + 0.3 * w, y0 + 0.35 * h),
        (x0 + 0.7 * w, y0 + 0.35 * h),
        (x0 + 0.5 * w, y0 + 0.55 * h),
        (x0 + 0.35 * w, y0 + 0.75 * h),
        (x0 + 0.65 * w, y0 + 0.75 * h),
    )
    return DetectedFace(
        bbox=(x0, y0, x1, y1), det_score=1.0, landmarks=landmarks, embedding=fake_face_embedding(identity)
    )


def fake_voice_frequency(identity: int) -> float:
    if not 0 <= identity <= 255:
        raise ValueError("fake voice identity must be in 0..255")
    return 200.0 + 10.0 * identity


def fake_voice_samples(
    identity: int, seconds: float, *, amplitude: float = 0.3, rate: int = FAKE_VOICE_RATE
) -> np.ndarray:
    """Mono float32 samples of person `identity` "speaking" for `seconds`."""
    t = np.arange(int(round(seconds * rate)), dtype=np.float64) / rate
    return (amplitude * np.sin(2 * np.pi * fake_voice_frequency(identity) * t)).astype(np.float32)


def fake_voice_embedding(identity: int) -> np.ndarray:
    """The unit float32 embedding the fake voice embedder gives `identity` (-1: no one)."""
    seed = int.from_bytes(hashlib.sha256(f"fake-voice-{identity}".encode()).digest()[:8], "big")
    vec = np.random.default_rng(seed).standard_normal(FAKE_VOICE_DIM).astype(np.float32)
    return vec / np.float32(np.linalg.norm(vec))


class FakeVoiceEmbedder:
    """Tones as voices (see the module docstring); same window layout as the real adapter."""

    dim = FAKE_VOICE_DIM
    sample_rate = FAKE_VOICE_RATE
    partial_s = 1.6
    step_s = 0.77

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "fake") -> None:
        opts = Options(name, options, {"faults"})
        self.info = ModelInfo(name=name, version=FAKE_VERSION)
        self.faults = _faults(opts)

    def speech(self, samples: np.ndarray) -> list[SpeechSegment]:
        self.faults.fire(self.info.name)
        wav = _check_mono(samples)
        hop = int(0.03 * self.sample_rate)
        n = len(wav) // hop
        if n == 0:
            return []
        rms = np.sqrt((wav[: n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(axis=1))
        segments: list[SpeechSegment] = []
        start: int | None = None
        for i, loud in enumerate([*(rms >= FAKE_VOICE_QUIET).tolist(), False]):
            if loud and start is None:
                start = i
            elif not loud and start is not None:
                segments.append(SpeechSegment(round(start * 0.03, 3), round(i * 0.03, 3)))
                start = None
        return segments

    def partials(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.faults.fire(self.info.name)
        wav = _check_mono(samples)
        if len(wav) == 0:
            return np.zeros(0, dtype=np.float64), np.zeros((0, self.dim), dtype=np.float32)
        size, step = int(self.partial_s * self.sample_rate), int(self.step_s * self.sample_rate)
        starts = list(range(0, max(1, len(wav) - size + step + 1), step))
        if len(starts) > 1 and (len(wav) - starts[-1]) / size < 0.75:
            starts.pop()
        rows = [self._identify(wav[s : s + size]) for s in starts]
        return np.asarray(starts, dtype=np.float64) / self.sample_rate, np.stack(rows)

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(clips), self.dim), dtype=np.float32)
        for i, clip in enumerate(clips):
            _starts, rows = self.partials(clip)
            if len(rows) == 0:
                raise ModelError("cannot embed an empty clip")
            mean = rows.mean(axis=0)
            out[i] = mean / np.float32(np.linalg.norm(mean))
        return out

    def _identify(self, window: np.ndarray) -> np.ndarray:
        if float(np.sqrt(np.mean(window.astype(np.float64) ** 2))) < FAKE_VOICE_QUIET:
            return fake_voice_embedding(-1)
        spectrum = np.abs(np.fft.rfft(window.astype(np.float64)))
        freq = float(np.argmax(spectrum)) * self.sample_rate / len(window)
        identity = int(round((freq - 200.0) / 10.0))
        return fake_voice_embedding(identity if 0 <= identity <= 255 else -1)


def _check_mono(samples: np.ndarray) -> np.ndarray:
    if not isinstance(samples, np.ndarray) or samples.dtype != np.float32 or samples.ndim != 1:
        raise ModelError(f"expected mono float32 samples of shape (n,), got {getattr(samples, 'dtype', type(samples))}")
    if not np.isfinite(samples).all():
        raise ModelError("audio samples hold NaN or infinity")
    return np.ascontiguousarray(samples)
