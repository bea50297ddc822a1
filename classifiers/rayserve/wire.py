"""Why: images and embeddings cross between the gateway and the model workers on every check, so
they travel as raw array bytes, never as JSON numbers. One frame = a 4-byte big-endian length, a
small JSON header (scalars: model names, scores, boxes, shapes) and then each array in NumPy's
`.npy` format, which carries its own dtype and shape and loads without pickle (no code runs on
decode, whoever sent the bytes). Both directions use the same frame.

    body = encode({"model": "nudenet"}, [image1, image2])
    meta, arrays = decode(body)
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from classifiers.base import DetectedFace, ModelError

CONTENT_TYPE = "application/x-consentgate-frame"
_LEN = struct.Struct(">I")
MAX_HEADER = 16 << 20


def encode(meta: Any, arrays: Sequence[np.ndarray] = ()) -> bytes:
    """One frame holding `meta` (JSON-able) and `arrays` (any numeric dtype, no objects)."""
    head = json.dumps({"meta": meta, "arrays": len(arrays)}, separators=(",", ":")).encode()
    buf = io.BytesIO()
    buf.write(_LEN.pack(len(head)))
    buf.write(head)
    for arr in arrays:
        if arr.dtype == object:
            raise ValueError("object arrays cannot cross the wire")
        np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def decode(body: bytes) -> tuple[Any, list[np.ndarray]]:
    """(meta, arrays) from a frame; ModelError on anything malformed."""
    if len(body) < _LEN.size:
        raise ModelError("malformed frame: shorter than its header length")
    (size,) = _LEN.unpack_from(body)
    if size > MAX_HEADER or _LEN.size + size > len(body):
        raise ModelError("malformed frame: header length out of range")
    try:
        head = json.loads(body[_LEN.size : _LEN.size + size])
        count = int(head["arrays"])
        meta = head["meta"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"malformed frame header: {exc}") from exc
    stream = io.BytesIO(body)
    stream.seek(_LEN.size + size)
    arrays: list[np.ndarray] = []
    try:
        for _ in range(count):
            arrays.append(np.load(stream, allow_pickle=False))
    except (ValueError, OSError, EOFError) as exc:
        raise ModelError(f"malformed frame array: {exc}") from exc
    if stream.tell() != len(body):
        raise ModelError("malformed frame: trailing bytes")
    return meta, arrays


def faces_to_wire(per_image: Sequence[Sequence[DetectedFace]], dim: int) -> tuple[list[Any], list[np.ndarray]]:
    """Faces as frame meta (boxes, scores, landmarks) + one float32 matrix of embeddings."""
    meta: list[list[dict[str, Any]]] = []
    rows: list[np.ndarray] = []
    for faces in per_image:
        listed = []
        for f in faces:
            idx = -1
            if f.embedding is not None:
                idx = len(rows)
                rows.append(np.asarray(f.embedding, dtype=np.float32))
            listed.append({"bbox": list(f.bbox), "det_score": float(f.det_score),
                           "landmarks": [list(p) for p in f.landmarks], "e": idx})
        meta.append(listed)
    matrix = np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    return meta, [matrix]


def faces_from_wire(meta: Any, arrays: Sequence[np.ndarray]) -> list[list[DetectedFace]]:
    matrix = arrays[0] if arrays else np.zeros((0, 0), dtype=np.float32)
    out: list[list[DetectedFace]] = []
    for listed in meta:
        faces = []
        for f in listed:
            idx = int(f["e"])
            faces.append(DetectedFace(
                bbox=tuple(int(v) for v in f["bbox"]),  # type: ignore[arg-type]
                det_score=float(f["det_score"]),
                landmarks=tuple((float(x), float(y)) for x, y in f["landmarks"]),
                embedding=None if idx < 0 else np.array(matrix[idx], dtype=np.float32),
            ))
        out.append(faces)
    return out
