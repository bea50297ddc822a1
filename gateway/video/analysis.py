"""Why: a video's facts are the image facts of its sampled frames, with time attached. This
module runs the same model Protocols the image path uses over sampled frames — NSFW models in
batches (batching is what makes a GPU or a batched ONNX session pay), the face analyzer per
frame — and keeps every finding's frame index and timestamp so the decision record can say
*when*. It decides nothing; `decide()` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from classifiers.base import (
    DetectedFace,
    FaceAnalyzer,
    ModelInfo,
    NsfwClassifier,
    PerceptualHasher,
    TwoStageFaceAnalyzer,
)
from gateway.video.engine import SamplerSpec, run_pass
from gateway.video.intake import open_video
from gateway.video.sampling import (
    DEFAULT_CHANGE_THRESHOLD,
    DEFAULT_SCENE_CUT_THRESHOLD,
    LabelSummary,
    SampledFrame,
    SampleReason,
    summarise,
)

__all__ = ["AnalysisFailure", "FrameAnalyzer", "FrameRef", "VideoFace", "VideoFacts", "analyze_video"]


@dataclass(frozen=True)
class FrameRef:
    index: int
    t: float
    is_scene_cut: bool
    reason: SampleReason = "grid"


@dataclass(frozen=True)
class VideoFace:
    """A face found in sampled frame `frame` (frame index) at `t` seconds. `face.bbox` is in the
    coordinates of the original video frame."""

    frame: int
    t: float
    face: DetectedFace


@dataclass(frozen=True)
class AnalysisFailure:
    """A model that raised: `check` names it the way the decision core does (`nsfw.<alias>`,
    `faces`, `hash_list`). Its results so far are dropped (NSFW) or kept (faces) and it is not
    called again; the caller fails closed."""

    check: str
    model: str
    message: str


@dataclass
class VideoFacts:
    """What the models saw. `nsfw[key][i]` are the scores of `frames[i]` (key: the model's name,
    or the alias the caller chose); `hashes[i]` the perceptual hashes of `frames[i]`."""

    frames: list[FrameRef]
    frame_interval: float
    seed: str | None = None  # the sampling seed (`sampling.phase_from_seed`), kept for the record
    phase: float = 0.0
    change_threshold: float | None = None
    nsfw: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    faces: list[VideoFace] = field(default_factory=list)
    hashes: list[list[str]] = field(default_factory=list)
    models: dict[str, ModelInfo] = field(default_factory=dict)
    failures: list[AnalysisFailure] = field(default_factory=list)

    def nsfw_summary(self, model: str, thresholds: Mapping[str, float]) -> dict[str, LabelSummary]:
        """Per label of `model`: max score, its time, and the time ranges over threshold."""
        scores = self.nsfw[model]
        return summarise([(ref.t, s) for ref, s in zip(self.frames, scores, strict=True)], thresholds,
                         self.frame_interval)


def _rescale(face: DetectedFace, scale: float) -> DetectedFace:
    if scale == 1.0:
        return face
    x0, y0, x1, y1 = face.bbox
    bbox = (round(x0 / scale), round(y0 / scale), round(x1 / scale), round(y1 / scale))
    landmarks = tuple((x / scale, y / scale) for x, y in face.landmarks)
    return replace(face, bbox=bbox, landmarks=landmarks)  # keeps the embedding and `unidentified`


TRACK_IOU = 0.5  # a face continues a track when its box overlaps the track's last box this much
TRACK_LOOK = 0.93  # ... and its eye-aligned 24x24 grey crop correlates with the track's last crop this much
REEMBED_EVERY = 3  # samples: a tracked face is embedded afresh at least this often (1.5 s at 2 fps)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _look(image: np.ndarray, face: DetectedFace) -> np.ndarray:
    """A zero-mean, unit-norm 24x24 grey thumbnail of the face, aligned on its eyes when the
    analyzer gives landmarks (so a zoom or a detector box that snapped to another scale does not
    change it), else of its box."""
    x0, y0, x1, y1 = face.bbox
    pad = (x1 - x0) // 4
    h, w = image.shape[:2]
    cx0, cy0 = max(0, x0 - pad), max(0, y0 - pad)
    cx1, cy1 = min(w, x1 + pad), min(h, y1 + pad)
    crop = cv2.cvtColor(np.ascontiguousarray(image[cy0:max(cy0 + 1, cy1), cx0:max(cx0 + 1, cx1)]),
                        cv2.COLOR_RGB2GRAY)
    k = 64 / max(crop.shape)
    small = cv2.resize(crop, (max(1, round(crop.shape[1] * k)), max(1, round(crop.shape[0] * k))),
                       interpolation=cv2.INTER_AREA)
    if len(face.landmarks) >= 4:
        pts = (np.asarray(face.landmarks[:4], np.float32) - (cx0, cy0)) * k
        a, b = pts[0:2].mean(axis=0), pts[2:4].mean(axis=0)
        src = np.stack([a, b])
        dst = np.array([[16.0, 9.0], [8.0, 9.0]], np.float32)  # eye centres in a 24x24 chip
        m, _ = cv2.estimateAffinePartial2D(src, dst)
        if m is not None:
            thumb = cv2.warpAffine(small, m, (24, 24), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        else:
            thumb = cv2.resize(small, (24, 24), interpolation=cv2.INTER_AREA)
    else:
        thumb = cv2.resize(small, (24, 24), interpolation=cv2.INTER_AREA)
    vec = thumb.astype(np.float32).ravel()
    vec -= vec.mean()
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


@dataclass
class _Track:
    bbox: tuple[int, int, int, int]  # in sample coordinates
    look: np.ndarray
    embedding: np.ndarray | None
    embedded_at: int  # sample number of its last fresh embedding
    unidentified: str | None = None  # why the analyzer could not identify it, as of that embedding


class FaceTracker:
    """Embeds each face once per track instead of once per sampled frame.

    A face in sample n continues a track of sample n-1 when no scene cut lies between them, its
    box overlaps the track's (IoU >= `TRACK_IOU`) and its eye-aligned grey crop correlates with the
    track's (>= `TRACK_LOOK`); it then reuses the track's embedding unless that is
    `REEMBED_EVERY` samples old. Anything else (a new face, a cut, a changed look) is embedded.
    A different person taking the same place in the same shot, looking alike at 24x24, is thus
    matched with at most `REEMBED_EVERY - 1` samples' delay (1 s at 2 fps), never missed.
    Tracking was added when embedding dominated the face model's cost (dlib's own ResNet: ~55-90 ms
    CPU a face against ~34 ms to detect on a 1024x576 frame); with the ONNX Runtime engine
    (`classifiers/dlib_resnet.py`, ~8 ms CPU a face, docs/models.md) it still saves the landmarks,
    the chip and the engine call per face and sample."""

    def __init__(self, analyzer: TwoStageFaceAnalyzer) -> None:
        self.analyzer = analyzer
        self.tracks: list[_Track] = []
        self.sample_no = 0
        self.embedded = 0
        self.reused = 0

    def faces(self, image: np.ndarray, scene_cut: bool) -> list[DetectedFace]:
        self.sample_no += 1
        found = self.analyzer.detect(image)
        previous = [] if scene_cut else self.tracks
        looks = [_look(image, f) for f in found]
        plan: list[_Track | None] = []
        taken: set[int] = set()
        for face, look in zip(found, looks, strict=True):
            best, best_iou = None, TRACK_IOU
            for i, candidate in enumerate(previous):
                iou = _iou(face.bbox, candidate.bbox)
                if i not in taken and iou >= best_iou and float(look @ candidate.look) >= TRACK_LOOK:
                    best, best_iou = i, iou
            fresh = best is None or previous[best].embedding is None or (
                self.sample_no - previous[best].embedded_at >= REEMBED_EVERY)
            if best is not None:
                taken.add(best)
            plan.append(None if fresh or best is None else previous[best])
        todo = [f for f, p in zip(found, plan, strict=True) if p is None]
        embedded = iter(self.analyzer.embed(image, todo) if todo else [])
        out: list[DetectedFace] = []
        tracks: list[_Track] = []
        for face, look, track in zip(found, looks, plan, strict=True):
            if track is None:
                face = next(embedded)
                self.embedded += 1
                tracks.append(_Track(face.bbox, look, face.embedding, self.sample_no, face.unidentified))
            else:
                face = replace(face, embedding=track.embedding, unidentified=face.unidentified or track.unidentified)
                self.reused += 1
                tracks.append(_Track(face.bbox, look, track.embedding, track.embedded_at, face.unidentified))
            out.append(face)
        self.tracks = tracks
        return out


class FrameAnalyzer:
    """Runs the models over batches of sampled frames and accumulates `facts` — the batch
    callback of `engine.run_pass`. NSFW models get whole batches (batching is what makes a GPU
    or a batched ONNX session pay); the face analyzer and the hasher go frame by frame.

    `strict=True` lets a model's exception propagate (the library contract of `analyze_video`);
    otherwise it becomes an `AnalysisFailure` and the pass goes on with the other models."""

    def __init__(self, nsfw_models: Mapping[str, NsfwClassifier], face_analyzer: FaceAnalyzer | None, *,
                 hasher: PerceptualHasher | None = None, fps: float, source_width: int, strict: bool = False,
                 after_batch: Callable[[VideoFacts, int], None] | None = None) -> None:
        self.nsfw_models = dict(nsfw_models)
        self.face_analyzer = face_analyzer
        self.tracker = FaceTracker(face_analyzer) if isinstance(face_analyzer, TwoStageFaceAnalyzer) else None
        self.hasher = hasher
        self.source_width = source_width
        self.strict = strict
        self.after_batch = after_batch
        self.facts = VideoFacts(frames=[], frame_interval=1.0 / fps, nsfw={k: [] for k in self.nsfw_models})
        for model in self.nsfw_models.values():
            self.facts.models[model.info.name] = model.info
        for extra in (face_analyzer, hasher):
            if extra is not None:
                self.facts.models[extra.info.name] = extra.info

    def _failed(self, check: str, model: str, exc: Exception) -> None:
        if self.strict:
            raise exc
        self.facts.failures.append(AnalysisFailure(check, model, f"{type(exc).__name__}: {exc}"))

    def __call__(self, batch: Sequence[SampledFrame]) -> None:
        facts = self.facts
        first = len(facts.frames)
        images = [s.rgb for s in batch]
        for key, model in list(self.nsfw_models.items()):
            try:
                scores = model.classify(images)
                if len(scores) != len(images):
                    raise ValueError(f"NSFW model {model.info.name} returned {len(scores)} results "
                                     f"for {len(images)} images")
            except Exception as exc:  # noqa: BLE001 - recorded; the decision fails closed
                self._failed(f"nsfw.{key}", model.info.name, exc)
                del self.nsfw_models[key]
                facts.nsfw.pop(key, None)
                continue
            facts.nsfw[key].extend(dict(s) for s in scores)
        if self.face_analyzer is not None:
            try:
                for sample in batch:
                    scale = sample.rgb.shape[1] / self.source_width if self.source_width else 1.0
                    # a frame picked for a change since the last analysed one starts afresh, as a cut
                    fresh = sample.is_scene_cut or sample.reason == "change"
                    faces = (self.tracker.faces(sample.rgb, fresh) if self.tracker is not None
                             else self.face_analyzer.analyze(sample.rgb))
                    for face in faces:
                        facts.faces.append(VideoFace(sample.index, sample.t, _rescale(face, scale)))
            except Exception as exc:  # noqa: BLE001
                self._failed("faces", self.face_analyzer.info.name, exc)
                self.face_analyzer = None
                self.tracker = None
        if self.hasher is not None:
            try:
                facts.hashes.extend(self.hasher.hashes(s.rgb) for s in batch)
            except Exception as exc:  # noqa: BLE001
                self._failed("hash_list", self.hasher.info.name, exc)
                self.hasher = None
        facts.frames.extend(FrameRef(s.index, s.t, s.is_scene_cut, s.reason) for s in batch)
        if self.after_batch is not None:
            self.after_batch(facts, first)


def analyze_video(path: str | os.PathLike[str], *, nsfw_models: Sequence[NsfwClassifier],
                  face_analyzer: FaceAnalyzer | None, fps: float = 2.0,
                  progress: Callable[[float], None] | None = None, batch_size: int = 16,
                  max_side: int = 1024, scene_cut_threshold: float = DEFAULT_SCENE_CUT_THRESHOLD,
                  source_width: int | None = None, phase: float = 0.0,
                  change_threshold: float | None = DEFAULT_CHANGE_THRESHOLD) -> VideoFacts:
    """Sample `path` and run the models. Model errors (ModelError) propagate: the caller fails
    closed. Decoding errors raise VideoError (400). Face boxes are mapped back to the original
    frame size (`source_width`, read from the file when not given)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    names = [m.info.name for m in nsfw_models]
    if len(set(names)) != len(names):
        raise ValueError("two NSFW models share a name")
    width = source_width if source_width is not None else _width_of(path)
    models = {m.info.name: m for m in nsfw_models}
    analyzer = FrameAnalyzer(models, face_analyzer, fps=fps, source_width=width, strict=True)
    spec = SamplerSpec(on_batch=analyzer, fps=fps, scene_cut_threshold=scene_cut_threshold, max_side=max_side,
                       batch_size=batch_size, phase=phase, change_threshold=change_threshold)
    run_pass(path, sampler=spec, progress=progress)
    return analyzer.facts


def _width_of(path: str | os.PathLike[str]) -> int:
    with open_video(path) as container:
        return int(container.streams.video[0].codec_context.width)
