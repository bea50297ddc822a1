"""Why: ArcFace embeddings (insightface) separate identities far better than dlib's ResNet, and
SCRFD finds small and turned faces that HOG misses. insightface ships no weights, and its
pretrained packs (buffalo_l, antelopev2, ...) are licensed for non-commercial research only, so
the operator points `model_dir` at a pack folder they are entitled to use: a directory of ONNX
files (a detection model with SCRFD outputs, a recognition model with a 112×112 input), or a
pack with insightface's manifest. `FaceAnalysis(name=<that dir>)` loads it; a directory is always
passed, so insightface's downloader can never run.

Only the detection and recognition models run (`allowed_modules`): a pack's age/gender and
landmark models are not loaded — less work and no attributes we do not need to hold.
`det_score` is SCRFD's score in [0, 1]; landmarks are its 5 points; embeddings are ArcFace
vectors L2-normalised to float32. insightface expects BGR, so RGB input is flipped.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from classifiers._common import Options, check_rgb, local_model_dir, weights_digest
from classifiers.base import DetectedFace, ModelError, ModelInfo


class InsightFaceAnalyzer:
    """Options: `model_dir` (required), `det_size` (detector input side, default 640),
    `det_thresh` (default 0.5), `threads` (onnxruntime intra-op threads, default 2),
    `max_faces` (0 = all, default 0)."""

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "insightface") -> None:
        opts = Options(name, options, {"model_dir", "det_size", "det_thresh", "threads", "max_faces"})
        folder = local_model_dir(name, opts)
        det_size = opts.positive_int("det_size", 640, minimum=32)
        det_thresh = opts.get("det_thresh", 0.5, float)
        threads = opts.positive_int("threads", 2)
        self._max_faces = opts.positive_int("max_faces", 0, minimum=0)
        onnx_files = sorted(folder.glob("*.onnx")) or sorted(folder.rglob("*.onnx"))
        if not onnx_files:
            raise ModelError(f"{name}: no .onnx files under {folder} (an insightface model pack directory)")
        try:
            import onnxruntime as ort
            from insightface.app import FaceAnalysis
        except ImportError as exc:
            raise ModelError(
                f"{name}: insightface is not importable ({exc}); install it with "
                "`pip install --no-deps insightface==2.1` plus the [insightface] extra"
            ) from exc
        # insightface's alignment calls a scikit-image API deprecated in 0.26; nothing we can act on
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"insightface\.utils\.face_align")
        sess = ort.SessionOptions()
        sess.intra_op_num_threads = threads
        sess.inter_op_num_threads = 1
        try:
            app = FaceAnalysis(
                name=str(folder),
                root=str(folder.parent),
                allowed_modules=["detection", "recognition"],
                providers=["CPUExecutionProvider"],
                sess_options=sess,
            )
            app.prepare(ctx_id=-1, det_thresh=det_thresh, det_size=(det_size, det_size))
        except Exception as exc:
            raise ModelError(f"{name}: cannot load the insightface pack in {folder}: {exc}") from exc
        recognition = app.models.get("recognition")
        if recognition is None:
            raise ModelError(f"{name}: {folder} has a detection model but no recognition (ArcFace) model")
        used = [Path(app.det_model.model_file), Path(recognition.model_file)]
        self.info = ModelInfo(name=name, version=weights_digest(used))
        self.embedding_dim = _embedding_dim(recognition)
        self._app = app
        self._lock = threading.Lock()

    def analyze(self, image: np.ndarray) -> list[DetectedFace]:
        img = check_rgb(image)
        bgr = np.ascontiguousarray(img[:, :, ::-1])
        with self._lock:  # SCRFD caches anchor grids in a plain dict
            try:
                raw = self._app.get(bgr, max_num=self._max_faces)
            except Exception as exc:
                raise ModelError(f"{self.info.name}: insightface failed: {exc}") from exc
        h, w = img.shape[:2]
        faces = []
        for face in raw:
            x0, y0, x1, y1 = (float(v) for v in face.bbox[:4])
            bx0 = min(max(round(x0), 0), w - 1)
            by0 = min(max(round(y0), 0), h - 1)
            bbox = (bx0, by0, min(max(round(x1), bx0 + 1), w), min(max(round(y1), by0 + 1), h))
            landmarks = tuple((float(x), float(y)) for x, y in (face.kps if face.kps is not None else ()))
            emb = np.asarray(face.embedding, dtype=np.float32).reshape(-1)
            norm = float(np.linalg.norm(emb))
            if not np.isfinite(norm) or norm == 0.0:
                raise ModelError(f"{self.info.name}: degenerate face embedding")
            faces.append(
                DetectedFace(
                    bbox=bbox,
                    det_score=float(np.clip(face.det_score, 0.0, 1.0)),
                    landmarks=landmarks,
                    embedding=emb / np.float32(norm),
                )
            )
        faces.sort(key=lambda f: (f.bbox[1], f.bbox[0]))
        return faces


def _embedding_dim(recognition: Any) -> int:
    shape = getattr(recognition, "output_shape", None)
    if shape is not None and len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0:
        return int(shape[1])
    size = int(recognition.input_size[0])
    probe = np.zeros((size, size, 3), dtype=np.uint8)
    return int(np.asarray(recognition.get_feat(probe)).reshape(-1).size)
