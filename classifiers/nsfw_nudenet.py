"""Why: NudeNet's YOLOv8 detector says *what* is exposed and *where*, which a policy needs
(a bare foot is not a bare breast), but its `NudeDetector` ignores thread settings and its
licence is AGPL-3.0 in the wheel. So we run its `320n.onnx` in our own onnxruntime session,
with the same preprocessing (pad bottom/right to a square, resize to 320, BGR / 255) and
postprocessing (score >= 0.2, class-agnostic NMS at IoU 0.45), keeping it swappable.

Scores per image: for each of the 18 labels, the highest confidence of a detection of that
label (0.0 when none). `detect` returns the boxes themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from classifiers._common import OnnxSessions, Options, package_file, rgb_rows, weights_digest
from classifiers.base import ModelError, ModelInfo

NUDENET_LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
INPUT_SIZE = 320
CANDIDATE_SCORE = 0.2
NMS_SCORE = 0.25
NMS_IOU = 0.45


@dataclass(frozen=True)
class Detection:
    """One NudeNet box in pixels of the image given: (x0, y0, x1, y1)."""

    label: str
    score: float
    box: tuple[int, int, int, int]


class NudeNetClassifier:
    """Options: `threads` (onnxruntime intra-op threads, default 2), `batch_size` (default 8)."""

    labels = NUDENET_LABELS

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "nudenet") -> None:
        opts = Options(name, options, {"threads", "batch_size"})
        threads = opts.positive_int("threads", 2)
        self._batch_size = opts.positive_int("batch_size", 8)
        path = package_file("nudenet", "320n.onnx")
        self.info = ModelInfo(name=name, version=weights_digest([path]))
        self._session = OnnxSessions(path, threads)
        self._input = self._session.get_inputs()[0].name

    def classify(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        return [self._scores(dets) for dets in self.detect(images)]

    def classify_with_faces(
        self, images: Sequence[np.ndarray]
    ) -> tuple[list[dict[str, float]], list[list[tuple[tuple[int, int, int, int], float]]]]:
        """Scores and the FACE_FEMALE / FACE_MALE boxes of each image, from one pass."""
        found = self.detect(images)
        boxes = [[(d.box, d.score) for d in dets if d.label in ("FACE_FEMALE", "FACE_MALE")] for dets in found]
        return [self._scores(dets) for dets in found], boxes

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """The detections of each image, same order (boxes in the input image's pixels)."""
        out: list[list[Detection]] = []
        for start in range(0, len(images), self._batch_size):
            chunk = [rgb_rows(img) for img in images[start : start + self._batch_size]]  # tiles: not copied
            blobs = [_preprocess(img) for img in chunk]
            try:
                (raw,) = self._session.run(None, {self._input: np.stack([b for b, _ in blobs])})
            except Exception as exc:
                raise ModelError(f"{self.info.name}: inference failed: {exc}") from exc
            for j, (img, (_blob, side)) in enumerate(zip(chunk, blobs, strict=True)):
                out.append(_postprocess(raw[j], side, img.shape[1], img.shape[0]))
        return out

    @staticmethod
    def _scores(detections: list[Detection]) -> dict[str, float]:
        scores = dict.fromkeys(NUDENET_LABELS, 0.0)
        for det in detections:
            scores[det.label] = max(scores[det.label], det.score)
        return scores


def _preprocess(image: np.ndarray) -> tuple[np.ndarray, int]:
    """Pad to a square at the bottom/right with black, resize to 320, CHW float32 in [0, 1].

    Channel order is BGR: that is what `nudenet` ends up feeding for a BGR image from
    cv2.imread (it swaps to RGB, then blobFromImage swaps back), and the scores match it."""
    import cv2

    h, w = image.shape[:2]
    side = max(h, w)
    padded = image if h == w else cv2.copyMakeBorder(image, 0, side - h, 0, side - w, cv2.BORDER_CONSTANT,
                                                     value=(0, 0, 0))  # a square (a tile) is not copied
    resized = cv2.resize(padded, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)[..., ::-1]
    blob = resized.astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
    return np.ascontiguousarray(blob), side


def _postprocess(raw: np.ndarray, side: int, width: int, height: int) -> list[Detection]:
    """YOLOv8 head (4 + classes, anchors) -> thresholded, NMS-filtered boxes in image pixels."""
    import cv2

    rows = raw.T  # (anchors, 4 + classes)
    class_scores = rows[:, 4:]
    best = class_scores.max(axis=1)
    keep = best >= CANDIDATE_SCORE
    if not keep.any():
        return []
    rows, best = rows[keep], best[keep]
    class_ids = class_scores[keep].argmax(axis=1)
    scale = side / INPUT_SIZE
    cx, cy, bw, bh = (rows[:, k] * scale for k in range(4))
    x = np.clip(cx - bw / 2, 0, width)
    y = np.clip(cy - bh / 2, 0, height)
    bw = np.minimum(bw, width - x)
    bh = np.minimum(bh, height - y)
    boxes = [[float(a), float(b), float(c), float(d)] for a, b, c, d in zip(x, y, bw, bh, strict=True)]
    indices = cv2.dnn.NMSBoxes(boxes, [float(s) for s in best], NMS_SCORE, NMS_IOU)
    detections = []
    for i in np.asarray(indices, dtype=np.int64).reshape(-1):
        bx, by, bwid, bhei = boxes[i]
        detections.append(
            Detection(
                label=NUDENET_LABELS[int(class_ids[i])],
                score=float(best[i]),
                box=(int(bx), int(by), int(bx + bwid), int(by + bhei)),
            )
        )
    return detections
