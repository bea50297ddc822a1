"""Why: consent checks need to find every face and tell who it is; dlib's HOG (or CNN mmod)
detector, 5-point landmarks and ResNet-128 embedder ship with their weights on PyPI
(`dlib-bin` + `face-recognition-models`) and run on CPU without a GPU.

Detection runs on a copy scaled down to `detect_max_side` (HOG cost grows with pixel count)
and boxes are mapped back; landmarks and the embedding use the full-resolution image. dlib
objects are not documented as thread-safe, so every call holds the adapter's lock.

`det_score` = logistic(2 × detector margin), in [0, 1]; `min_score` filters on the raw margin
(HOG: real frontal faces ~1.2–1.5, weak false positives ~0.1). Embeddings are dlib's
128-d descriptors, L2-normalised (dlib's usual Euclidean threshold 0.6 on raw descriptors).
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifiers._common import Options, check_rgb, weights_digest
from classifiers.base import DetectedFace, ModelError, ModelInfo

RESNET = "dlib_face_recognition_resnet_model_v1.dat"
PREDICTOR = "shape_predictor_5_face_landmarks.dat"
MMOD = "mmod_human_face_detector.dat"


def dlib_models_dir() -> Path:
    """face_recognition_models/models, located without importing the package (it needs
    pkg_resources, gone from recent setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("package 'face-recognition-models' is not installed (dlib face weights)")
    folder = Path(next(iter(spec.submodule_search_locations)), "models")
    for filename in (RESNET, PREDICTOR, MMOD):
        if not (folder / filename).is_file():
            raise ModelError(f"dlib weights file {folder / filename} is missing")
    return folder


class DlibFaceAnalyzer:
    """Options: `detector` ("hog" | "cnn", default hog), `upsample` (default 1), `min_score`
    (raw margin, default 0.5 for hog, 0.3 for cnn), `detect_max_side` (default 512; 0 = full
    size), `num_jitters` (default 0), `embed` (default True; False only detects)."""

    embedding_dim = 128

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "dlib") -> None:
        opts = Options(
            name, options, {"detector", "upsample", "min_score", "detect_max_side", "num_jitters", "embed"}
        )
        self._kind = opts.choice("detector", "hog", ("hog", "cnn"))
        self._upsample = opts.positive_int("upsample", 1, minimum=0)
        self._min_score = opts.get("min_score", 0.5 if self._kind == "hog" else 0.3, float)
        self._max_side = opts.positive_int("detect_max_side", 512, minimum=0)
        self._jitters = opts.positive_int("num_jitters", 0, minimum=0)
        self._embed = opts.get("embed", True, bool)
        try:
            import dlib
        except ImportError as exc:
            raise ModelError(f"{name}: the 'dlib-bin' package is not importable: {exc}") from exc
        folder = dlib_models_dir()
        files = [folder / MMOD, folder / PREDICTOR, folder / RESNET]
        self.info = ModelInfo(name=name, version=weights_digest(files))
        self._dlib = dlib
        self._lock = threading.Lock()
        if self._kind == "hog":
            self._hog = dlib.get_frontal_face_detector()
        else:
            self._cnn = dlib.cnn_face_detection_model_v1(str(folder / MMOD))
        self._predictor = dlib.shape_predictor(str(folder / PREDICTOR))
        self._resnet = dlib.face_recognition_model_v1(str(folder / RESNET))

    def analyze(self, image: np.ndarray) -> list[DetectedFace]:
        return self._analyze(image, embed=True)

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces with landmarks, not embedded (see `TwoStageFaceAnalyzer`)."""
        return self._analyze(image, embed=False)

    def _analyze(self, image: np.ndarray, *, embed: bool) -> list[DetectedFace]:
        img = check_rgb(image)
        small, scale = _downscale(img, self._max_side)
        with self._lock:
            try:
                raw = self._detect(small)
                faces = [self._face(img, box, score, scale, embed=embed)
                         for box, score in raw if score >= self._min_score]
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(f"{self.info.name}: dlib failed: {exc}") from exc
        faces.sort(key=lambda f: (f.bbox[1], f.bbox[0]))
        return faces

    def embed(self, image: np.ndarray, faces: Sequence[DetectedFace]) -> list[DetectedFace]:
        """`faces` (from `detect` on this image) with their embeddings."""
        if not faces or not self._embed:
            return list(faces)
        img = check_rgb(image)
        with self._lock:
            try:
                return [self._embedded(img, face) for face in faces]
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(f"{self.info.name}: dlib failed: {exc}") from exc

    def _embedded(self, img: np.ndarray, face: DetectedFace) -> DetectedFace:
        shape = self._predictor(img, self._dlib.rectangle(*face.bbox))
        return DetectedFace(bbox=face.bbox, det_score=face.det_score, landmarks=face.landmarks,
                            embedding=self._descriptor(img, shape))

    def _descriptor(self, img: np.ndarray, shape: Any) -> np.ndarray:
        raw = self._resnet.compute_face_descriptor(img, shape, self._jitters)
        desc = np.asarray(raw, dtype=np.float32)
        norm = float(np.linalg.norm(desc))
        if not math.isfinite(norm) or norm == 0.0:
            raise ModelError(f"{self.info.name}: degenerate face descriptor")
        return desc / np.float32(norm)

    def _detect(self, small: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        if self._kind == "hog":
            rects, scores, _idx = self._hog.run(small, self._upsample, min(self._min_score, 0.0) - 0.5)
            pairs = zip(rects, scores, strict=True)
            return [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in pairs]
        found = self._cnn(small, self._upsample)
        rects = [(d.rect, float(d.confidence)) for d in found]
        return [((r.left(), r.top(), r.right(), r.bottom()), s) for r, s in rects]

    def _face(
        self, img: np.ndarray, box: tuple[int, int, int, int], score: float, scale: float, *, embed: bool = True
    ) -> DetectedFace:
        h, w = img.shape[:2]
        x0 = min(max(round(box[0] / scale), 0), w - 1)
        y0 = min(max(round(box[1] / scale), 0), h - 1)
        x1 = min(max(round(box[2] / scale), x0 + 1), w)
        y1 = min(max(round(box[3] / scale), y0 + 1), h)
        rect = self._dlib.rectangle(x0, y0, x1, y1)
        shape = self._predictor(img, rect)
        landmarks = tuple((float(shape.part(i).x), float(shape.part(i).y)) for i in range(shape.num_parts))
        embedding = self._descriptor(img, shape) if (embed and self._embed) else None
        det_score = 1.0 / (1.0 + math.exp(-2.0 * score))
        return DetectedFace(
            bbox=(x0, y0, x1, y1), det_score=det_score, landmarks=landmarks, embedding=embedding
        )


def _downscale(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    side = max(img.shape[:2])
    if max_side <= 0 or side <= max_side:
        return img, 1.0
    import cv2

    scale = max_side / side
    size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    return np.ascontiguousarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA)), scale
