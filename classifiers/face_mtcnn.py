"""Why: dlib's HOG detector misses small, turned and partly covered faces; MTCNN (a three-stage
CNN cascade) finds more of them and its weights ship inside the `facenet-pytorch` wheel
(`data/{pnet,rnet,onet}.pt`, MIT), so it runs offline. MTCNN only detects, so `mtcnn+dlib` hands
its boxes to dlib's 5-point shape predictor and ResNet-128 embedder: the embeddings are dlib's
(the same templates space as the `dlib` adapter only if the landmarks agree — re-embed enrolled
subjects anyway when switching, `consentgate models face-ready`).

facenet-pytorch 2.6.0 pins torch<2.3, so it is installed with --no-deps, and it needs
torchvision: it runs in the extras venv (scripts/install_extras.sh).

`det_score` is MTCNN's face probability in [0, 1]; `min_score` filters on it. Landmarks are dlib's
5 points when embedding, MTCNN's own 5 points (eyes, nose, mouth corners) with `embed: false`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from classifiers._common import Options, check_rgb, package_file, weights_digest
from classifiers.base import DetectedFace, ModelError, ModelInfo
from classifiers.face_dlib import PREDICTOR, RESNET, _downscale, dlib_models_dir

MTCNN_FILES = ("pnet.pt", "rnet.pt", "onet.pt")


class MtcnnDetector:
    """MTCNN boxes, probabilities and 5 landmarks (facenet-pytorch). Options as `MtcnnDlibAnalyzer`
    minus the dlib ones."""

    def __init__(self, *, min_face_size: int = 20, detect_max_side: int = 512, name: str = "mtcnn") -> None:
        files = [package_file("facenet_pytorch", "data", f) for f in MTCNN_FILES]
        try:
            import torch
            from facenet_pytorch import MTCNN
        except ImportError as exc:
            raise ModelError(
                f"{name}: facenet-pytorch / torchvision are not importable here ({exc}); "
                "they live in the extras venv (scripts/install_extras.sh)"
            ) from exc
        self.files = files
        self._torch = torch
        self._max_side = detect_max_side
        self._mtcnn = MTCNN(keep_all=True, device="cpu", min_face_size=min_face_size, post_process=False)
        self._mtcnn.eval()

    def detect(self, image: np.ndarray) -> list[tuple[tuple[float, float, float, float], float, np.ndarray]]:
        """[(box (x0, y0, x1, y1) in pixels of `image`, probability, landmarks (5, 2))]."""
        img = check_rgb(image)
        small, scale = _downscale(img, self._max_side)
        with self._torch.inference_mode():
            boxes, probs, points = self._mtcnn.detect(small, landmarks=True)
        if boxes is None:
            return []
        return [
            (tuple(float(v) / scale for v in box), float(p), np.asarray(lm, np.float64) / scale)  # type: ignore[misc]
            for box, p, lm in zip(boxes, probs, points, strict=True)
        ]


class MtcnnDlibAnalyzer:
    """Options: `min_score` (MTCNN probability, default 0.9), `min_face_size` (px at the detection
    scale, default 20), `detect_max_side` (default 512; 0 = full size), `num_jitters` (default 0),
    `embed` (default True; False only detects)."""

    embedding_dim = 128

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "mtcnn+dlib") -> None:
        opts = Options(
            name, options, {"min_score", "min_face_size", "detect_max_side", "num_jitters", "embed"}
        )
        self._min_score = opts.get("min_score", 0.9, float)
        min_face = opts.positive_int("min_face_size", 20, minimum=8)
        max_side = opts.positive_int("detect_max_side", 512, minimum=0)
        self._jitters = opts.positive_int("num_jitters", 0, minimum=0)
        self._embed = opts.get("embed", True, bool)
        self._detector = MtcnnDetector(min_face_size=min_face, detect_max_side=max_side, name=name)
        try:
            import dlib
        except ImportError as exc:
            raise ModelError(f"{name}: the 'dlib-bin' package is not importable: {exc}") from exc
        folder = dlib_models_dir()
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(folder / PREDICTOR))
        self._resnet = dlib.face_recognition_model_v1(str(folder / RESNET))
        self.info = ModelInfo(
            name=name, version=weights_digest([*self._detector.files, folder / PREDICTOR, folder / RESNET])
        )
        self._lock = threading.Lock()

    def analyze(self, image: np.ndarray) -> list[DetectedFace]:
        img = check_rgb(image)
        h, w = img.shape[:2]
        with self._lock:
            try:
                found = self._detector.detect(img)
                faces = [self._face(img, box, p, lm, w, h) for box, p, lm in found if p >= self._min_score]
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(f"{self.info.name}: mtcnn/dlib failed: {exc}") from exc
        faces.sort(key=lambda f: (f.bbox[1], f.bbox[0]))
        return faces

    def _face(
        self,
        img: np.ndarray,
        box: tuple[float, float, float, float],
        prob: float,
        points: np.ndarray,
        w: int,
        h: int,
    ) -> DetectedFace:
        x0 = min(max(round(box[0]), 0), w - 1)
        y0 = min(max(round(box[1]), 0), h - 1)
        x1 = min(max(round(box[2]), x0 + 1), w)
        y1 = min(max(round(box[3]), y0 + 1), h)
        score = float(np.clip(prob, 0.0, 1.0))
        if not self._embed:
            landmarks = tuple((float(x), float(y)) for x, y in points)
            return DetectedFace(bbox=(x0, y0, x1, y1), det_score=score, landmarks=landmarks)
        shape = self._predictor(img, self._dlib.rectangle(x0, y0, x1, y1))
        landmarks = tuple((float(shape.part(i).x), float(shape.part(i).y)) for i in range(shape.num_parts))
        desc = np.asarray(self._resnet.compute_face_descriptor(img, shape, self._jitters), dtype=np.float32)
        norm = float(np.linalg.norm(desc))
        if not math.isfinite(norm) or norm == 0.0:
            raise ModelError(f"{self.info.name}: degenerate face descriptor")
        return DetectedFace(
            bbox=(x0, y0, x1, y1), det_score=score, landmarks=landmarks, embedding=desc / np.float32(norm)
        )
