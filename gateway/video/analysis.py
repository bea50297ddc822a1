"""Why: a video's facts are the image facts of its sampled frames, with time attached. This
module runs the same model Protocols the image path uses over sampled frames — NSFW models in
batches (batching is what makes a GPU or a batched ONNX session pay), the face analyzer per
frame — and keeps every finding's frame index and timestamp so the decision record can say
*when*. It decides nothing; `decide()` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from classifiers.base import DetectedFace, FaceAnalyzer, ModelInfo, NsfwClassifier, PerceptualHasher
from gateway.video.engine import SamplerSpec, run_pass
from gateway.video.intake import open_video
from gateway.video.sampling import DEFAULT_SCENE_CUT_THRESHOLD, LabelSummary, SampledFrame, summarise

__all__ = ["AnalysisFailure", "FrameAnalyzer", "FrameRef", "VideoFace", "VideoFacts", "analyze_video"]


@dataclass(frozen=True)
class FrameRef:
    index: int
    t: float
    is_scene_cut: bool


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
    return DetectedFace(bbox=bbox, det_score=face.det_score, landmarks=landmarks, embedding=face.embedding)


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
                    for face in self.face_analyzer.analyze(sample.rgb):
                        facts.faces.append(VideoFace(sample.index, sample.t, _rescale(face, scale)))
            except Exception as exc:  # noqa: BLE001
                self._failed("faces", self.face_analyzer.info.name, exc)
                self.face_analyzer = None
        if self.hasher is not None:
            try:
                facts.hashes.extend(self.hasher.hashes(s.rgb) for s in batch)
            except Exception as exc:  # noqa: BLE001
                self._failed("hash_list", self.hasher.info.name, exc)
                self.hasher = None
        facts.frames.extend(FrameRef(s.index, s.t, s.is_scene_cut) for s in batch)
        if self.after_batch is not None:
            self.after_batch(facts, first)


def analyze_video(path: str | os.PathLike[str], *, nsfw_models: Sequence[NsfwClassifier],
                  face_analyzer: FaceAnalyzer | None, fps: float = 2.0,
                  progress: Callable[[float], None] | None = None, batch_size: int = 16,
                  max_side: int = 1024, scene_cut_threshold: float = DEFAULT_SCENE_CUT_THRESHOLD,
                  source_width: int | None = None) -> VideoFacts:
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
                       batch_size=batch_size)
    run_pass(path, sampler=spec, progress=progress)
    return analyzer.facts


def _width_of(path: str | os.PathLike[str]) -> int:
    with open_video(path) as container:
        return int(container.streams.video[0].codec_context.width)
