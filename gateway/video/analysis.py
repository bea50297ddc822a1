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

from classifiers.base import DetectedFace, FaceAnalyzer, ModelInfo, NsfwClassifier
from gateway.video.sampling import (
    DEFAULT_SCENE_CUT_THRESHOLD,
    LabelSummary,
    SampledFrame,
    sample_frames,
    summarise,
)

__all__ = ["FrameRef", "VideoFace", "VideoFacts", "analyze_video"]


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


@dataclass
class VideoFacts:
    """What the models saw. `nsfw[model][i]` are the scores of `frames[i]`."""

    frames: list[FrameRef]
    frame_interval: float
    nsfw: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    faces: list[VideoFace] = field(default_factory=list)
    models: dict[str, ModelInfo] = field(default_factory=dict)

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
    facts = VideoFacts(frames=[], frame_interval=1.0 / fps, nsfw={n: [] for n in names})
    for model in nsfw_models:
        facts.models[model.info.name] = model.info
    if face_analyzer is not None:
        facts.models[face_analyzer.info.name] = face_analyzer.info
    width = source_width if source_width is not None else _width_of(path)
    batch: list[SampledFrame] = []

    def flush() -> None:
        images = [s.rgb for s in batch]
        for model in nsfw_models:
            scores = model.classify(images)
            if len(scores) != len(images):
                raise ValueError(f"NSFW model {model.info.name} returned {len(scores)} results "
                                 f"for {len(images)} images")
            facts.nsfw[model.info.name].extend(dict(s) for s in scores)
        if face_analyzer is not None:
            for sample in batch:
                scale = sample.rgb.shape[1] / width if width else 1.0
                for face in face_analyzer.analyze(sample.rgb):
                    facts.faces.append(VideoFace(sample.index, sample.t, _rescale(face, scale)))
        facts.frames.extend(FrameRef(s.index, s.t, s.is_scene_cut) for s in batch)
        batch.clear()

    for sample in sample_frames(path, fps=fps, scene_cut_threshold=scene_cut_threshold, max_side=max_side,
                                progress=progress):
        batch.append(sample)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return facts


def _width_of(path: str | os.PathLike[str]) -> int:
    from gateway.video.intake import open_video

    with open_video(path) as container:
        return int(container.streams.video[0].codec_context.width)
