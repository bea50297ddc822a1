"""rivaGan watermark: invisible-watermark's learned encoder/decoder, run with our own sessions.

Why: rivaGan survives crops, which the DWT method does not, at ~1 s per 512x512 image on two
cores. imwatermark keeps its ONNX sessions in class attributes (a process-wide mutable
singleton) and pre-processes through torch; we load the same two ONNX files from the installed
package once per ``RivaGanWatermarker`` (lazily, under a lock; onnxruntime sessions are safe to
call from several threads) and do the pre/post-processing in numpy.

Payload: exactly 32 bits -> ``RIVAGAN_PAYLOAD`` (24-bit id + 8-bit check). One decode of an
unmarked image passes the check with probability 2**-8, so detections carry
``needs_confirmation=True``: the caller resolves them against the C2PA manifest or the
perceptual hash recorded with the id (``models.lookup_watermark``) before naming a decision.

Scale: the networks always run with the longest side resized to ``work_side`` (default 512);
the encoder's residual is resized back onto the full-resolution image. The cost stays ~1 s
whatever the size, and a resized copy is read at the scale it was marked at.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from gateway.provenance.errors import WatermarkError
from gateway.provenance.payload import RIVAGAN_PAYLOAD, PayloadCodec
from gateway.provenance.wmbase import (
    DETECT_MIN_AREA,
    WatermarkDetection,
    WatermarkFaults,
    bit_accuracy,
    check_image,
)

__all__ = ["RivaGanWatermarker", "rivagan_model_dir"]

_THRESHOLD = 0.52  # imwatermark's decision threshold on the decoder output


def rivagan_model_dir() -> Path:
    """The folder of the installed ``imwatermark`` package (found without importing it: that
    would import torch)."""
    spec = importlib.util.find_spec("imwatermark")
    if spec is None or not spec.submodule_search_locations:
        raise WatermarkError("rivaGan: the invisible-watermark package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


class RivaGanWatermarker:
    method = "rivaGan"
    version = "1"

    def __init__(self, *, work_side: int | None = 512, threads: int | None = None, max_candidates: int = 1,
                 model_dir: Path | None = None, codec: PayloadCodec = RIVAGAN_PAYLOAD) -> None:
        """``max_candidates`` > 1 lets the decoder flip the least confident bits (more robust, but
        the false-accept bound grows to ``max_candidates * 2**-8``)."""
        if codec.n_bits != 32:
            raise ValueError("rivaGan carries exactly 32 bits")
        self.max_candidates = max(1, max_candidates)
        self.codec = codec
        self.work_side = work_side
        self.threads = threads
        self.model_dir = model_dir
        self.faults = WatermarkFaults()
        self._lock = threading.Lock()
        self._sessions: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._sessions is None:
                import onnxruntime as ort

                folder = self.model_dir or rivagan_model_dir()
                options = ort.SessionOptions()
                if self.threads:
                    options.intra_op_num_threads = self.threads
                try:
                    self._sessions = tuple(
                        ort.InferenceSession(str(folder / f"rivagan_{part}.onnx"), options,
                                             providers=["CPUExecutionProvider"])
                        for part in ("encoder", "decoder")
                    )
                except Exception as exc:  # missing or corrupt model files
                    raise WatermarkError(f"rivaGan: cannot load models from {folder}: {exc}") from exc
            assert self._sessions is not None
            return self._sessions

    def _work_size(self, height: int, width: int) -> tuple[int, int]:
        if not self.work_side:
            return height, width
        factor = self.work_side / max(height, width)
        return max(1, round(height * factor)), max(1, round(width * factor))

    def embed(self, rgb: NDArray[np.uint8], wm_id: int) -> NDArray[np.uint8]:
        self.faults.check("embed")
        image = check_image(rgb, self.method)
        encoder, _ = self._load()
        height, width = image.shape[:2]
        wh, ww = self._work_size(height, width)
        small = image if (wh, ww) == (height, width) else _resize(image, ww, wh)
        frame = _to_frame(small)
        data = self.codec.encode(wm_id).astype(np.float32)[None, :]
        try:
            marked = np.clip(encoder.run(None, {"frame": frame, "data": data})[0], -1.0, 1.0)
        except Exception as exc:
            raise WatermarkError(f"rivaGan: encoder failed: {exc}") from exc
        residual = (marked[0, :, 0].transpose(1, 2, 0) - frame[0, :, 0].transpose(1, 2, 0)) * 127.5
        residual = residual[:, :, ::-1]  # the networks work in BGR
        if (wh, ww) != (height, width):
            residual = cv2.resize(residual, (width, height), interpolation=cv2.INTER_LINEAR)
        marked_full = np.rint(image.astype(np.float32) + residual)
        out: NDArray[np.uint8] = np.clip(marked_full, 0, 255).astype(np.uint8)
        return out

    def read_raw(self, rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
        """The decoder's 32 raw outputs (marked bits sit far from the 0.52 threshold)."""
        image = check_image(rgb, self.method, min_area=DETECT_MIN_AREA, min_side=32)
        _, decoder = self._load()
        height, width = image.shape[:2]
        wh, ww = self._work_size(height, width)
        if (wh, ww) != (height, width):
            image = _resize(image, ww, wh)
        try:
            raw: NDArray[np.float32] = decoder.run(None, {"frame": _to_frame(image)})[0][0]
        except Exception as exc:
            raise WatermarkError(f"rivaGan: decoder failed: {exc}") from exc
        return raw

    def detect(self, rgb: NDArray[np.uint8]) -> WatermarkDetection:
        self.faults.check("detect")
        raw = self.read_raw(rgb)
        # confidence grows with the distance from the threshold (marked bits sit ~10 away)
        soft = np.clip(0.5 + (raw.astype(np.float64) - _THRESHOLD) / 40.0, 0.0, 1.0)
        found = self.codec.decode(soft, max_candidates=self.max_candidates)
        bound = self.codec.false_accept_bound(found.candidates if found else self.max_candidates)
        if found is None:
            return WatermarkDetection(None, None, self.method, bound, needs_confirmation=True)
        return WatermarkDetection(found.wm_id, bit_accuracy(soft, found), self.method, bound,
                                  needs_confirmation=True, corrected_bits=found.flipped)


def _resize(rgb: NDArray[np.uint8], width: int, height: int) -> NDArray[np.uint8]:
    shrink = width * height < rgb.shape[0] * rgb.shape[1]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    out = np.asarray(cv2.resize(rgb, (width, height), interpolation=interpolation), dtype=np.uint8)
    return out


def _to_frame(rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
    bgr = rgb[:, :, ::-1].astype(np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None, :, None, :, :])
