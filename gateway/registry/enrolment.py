"""Why: a template must come from exactly one clear face of the person who consented — a group photo,
an empty frame or a tiny blurry face would enrol the wrong person or a useless template. This module is
the gate each enrolment image passes, and the (lossless) image encoding kept for re-embedding.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from classifiers.base import DetectedFace, FaceAnalyzer
from gateway.registry.errors import EnrolmentError


@dataclass(frozen=True)
class QualityGate:
    min_face_px: int = 64  # the face box's shorter side, in pixels of the image given
    min_det_score: float = 0.8  # dlib: logistic(2 × HOG margin); real frontal faces score 0.9+


def check_image(image: np.ndarray, index: int) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise EnrolmentError("bad_image", f"image {index}: expected an RGB uint8 array (H, W, 3)", index)
    return arr


def single_face(analyzer: FaceAnalyzer, image: np.ndarray, index: int, gate: QualityGate) -> DetectedFace:
    """The one face in `image`, or an EnrolmentError that says why not."""
    faces = analyzer.analyze(image)
    model = analyzer.info.name
    if not faces:
        raise EnrolmentError("no_face", f"image {index}: no face found (face model {model!r})", index)
    if len(faces) > 1:
        raise EnrolmentError(
            "multiple_faces",
            f"image {index}: {len(faces)} faces found (face model {model!r}); an enrolment image must show "
            "exactly one person",
            index,
        )
    face = faces[0]
    x0, y0, x1, y1 = face.bbox
    side = min(x1 - x0, y1 - y0)
    if side < gate.min_face_px:
        raise EnrolmentError(
            "low_quality", f"image {index}: the face is {side}px, smaller than {gate.min_face_px}px", index
        )
    if face.det_score < gate.min_det_score:
        raise EnrolmentError(
            "low_quality",
            f"image {index}: face detection score {face.det_score:.2f} is below {gate.min_det_score:.2f}",
            index,
        )
    if face.embedding is None:
        raise EnrolmentError("no_embedding", f"face model {model!r} detects faces but does not embed them")
    return face


def embeddings_for(
    analyzer: FaceAnalyzer, images: Sequence[np.ndarray], gate: QualityGate
) -> list[np.ndarray]:
    out = []
    for i, img in enumerate(images):
        emb = single_face(analyzer, img, i, gate).embedding
        assert emb is not None  # checked by single_face
        out.append(np.asarray(emb, np.float32).reshape(-1))
    return out


def encode_png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))
