"""``trustMark``: Adobe TrustMark's ONNX encoder/decoder, loaded from a folder the operator fills.

Why: TrustMark is a C2PA-registered soft binding with published robustness (> 96 % bit accuracy
under common noise at 42-45 dB), but its weights are downloads, not PyPI packages, so the gateway
never fetches them: an operator who has them points ``model_dir`` (settings extra
``trustmark_model_dir``) at a folder holding ``encoder_<variant>.onnx`` and
``decoder_<variant>.onnx`` (variant Q by default) and policies may then name ``trustMark``. A
missing folder or file is a ``WatermarkError`` at load, naming the path — nothing is downloaded.

Model contract (TrustMark's exported graphs): the encoder takes the cover (1, 3, 256, 256) in
[-1, 1] and 100 secret bits (1, 100) in {0, 1} and returns the stego image; the decoder takes
(1, 3, R, R) in [-1, 1] (R = 256, 224 for variant P) and returns 100 logits (> 0 means 1). As in
TrustMark's own code, the residual (stego - cover, per-channel mean removed) is resized onto the
full image and scaled by ``strength``.

Payload: the 100 bits carry our 72-bit word (``payload.MARK_PAYLOAD``: 40-bit id + 32-bit check)
followed by 28 fixed pseudo-random filler bits; TrustMark's own BCH layer is not used. The
decoder's logits are soft values for the Chase decoder with ``max_candidates`` (16) words, so
P(an unmarked image yields an id) <= 16 * 2**-32.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from gateway.provenance.errors import WatermarkError
from gateway.provenance.payload import MARK_PAYLOAD, PayloadCodec
from gateway.provenance.wmbase import WatermarkDetection, WatermarkFaults, bit_accuracy, check_image

__all__ = ["SECRET_BITS", "TrustMarkWatermarker"]

SECRET_BITS = 100
ENCODER_SIDE = 256


def _filler(n: int) -> NDArray[np.float32]:
    digest = hashlib.sha256(b"consentgate/trustmark/filler").digest()
    bits = np.unpackbits(np.frombuffer(digest, dtype=np.uint8))[:n]
    return bits.astype(np.float32)


class TrustMarkWatermarker:
    method = "trustMark"
    version = "1"

    def __init__(self, *, model_dir: str | Path | None = None, variant: str = "Q", strength: float = 1.0,
                 max_candidates: int = 16, threads: int | None = None, codec: PayloadCodec = MARK_PAYLOAD) -> None:
        if model_dir is None or not str(model_dir):
            raise WatermarkError("trustMark: no model_dir set (settings extra 'trustmark_model_dir'); TrustMark's "
                                 "weights are never downloaded — place encoder_<variant>.onnx and "
                                 "decoder_<variant>.onnx in a folder and point model_dir at it")
        if codec.n_bits > SECRET_BITS:
            raise ValueError(f"trustMark carries {SECRET_BITS} bits")
        self.model_dir = Path(model_dir)
        self.variant = variant
        self.strength = float(strength) * (1.25 if variant == "P" else 1.0)
        self.decoder_side = 224 if variant == "P" else 256
        self.max_candidates = max(1, max_candidates)
        self.threads = threads
        self.codec = codec
        self.faults = WatermarkFaults()
        self._filler = _filler(SECRET_BITS - codec.n_bits)
        self._lock = threading.Lock()
        self._sessions: tuple[Any, Any] | None = None
        for part in ("encoder", "decoder"):
            path = self.model_dir / f"{part}_{variant}.onnx"
            if not path.is_file():
                raise WatermarkError(f"trustMark: {path} not found; place TrustMark's ONNX weights there "
                                     "(they are never downloaded)")

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._sessions is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                if self.threads:
                    options.intra_op_num_threads = self.threads
                try:
                    self._sessions = tuple(
                        ort.InferenceSession(str(self.model_dir / f"{part}_{self.variant}.onnx"), options,
                                             providers=["CPUExecutionProvider"])
                        for part in ("encoder", "decoder"))
                except Exception as exc:  # corrupt or incompatible model files
                    raise WatermarkError(f"trustMark: cannot load models from {self.model_dir}: {exc}") from exc
            assert self._sessions is not None
            return self._sessions

    def embed(self, rgb: NDArray[np.uint8], wm_id: int) -> NDArray[np.uint8]:
        self.faults.check("embed")
        image = check_image(rgb, self.method)
        encoder, _ = self._load()
        height, width = image.shape[:2]
        cover = _to_model(image, ENCODER_SIDE)
        secret = np.concatenate([self.codec.encode(wm_id).astype(np.float32), self._filler])[None, :]
        names = [i.name for i in encoder.get_inputs()]
        try:
            stego = np.clip(encoder.run(None, {names[0]: cover, names[1]: secret})[0], -1.0, 1.0)
        except Exception as exc:
            raise WatermarkError(f"trustMark: encoder failed: {exc}") from exc
        residual = (stego[0] - cover[0]).transpose(1, 2, 0)
        residual -= residual.mean(axis=(0, 1), keepdims=True)  # no colour shift
        residual = cv2.resize(residual, (width, height), interpolation=cv2.INTER_LINEAR)
        marked = image.astype(np.float32) + residual * np.float32(127.5 * self.strength)
        out: NDArray[np.uint8] = np.clip(np.rint(marked), 0, 255).astype(np.uint8)
        return out

    def logits(self, rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
        image = check_image(rgb, self.method, min_area=64 * 64, min_side=32)
        _, decoder = self._load()
        try:
            raw: NDArray[np.float32] = decoder.run(None, {decoder.get_inputs()[0].name:
                                                          _to_model(image, self.decoder_side)})[0][0]
        except Exception as exc:
            raise WatermarkError(f"trustMark: decoder failed: {exc}") from exc
        if raw.shape[0] < self.codec.n_bits:
            raise WatermarkError(f"trustMark: decoder returned {raw.shape[0]} values, expected {SECRET_BITS}")
        return raw

    def detect(self, rgb: NDArray[np.uint8]) -> WatermarkDetection:
        self.faults.check("detect")
        raw = self.logits(rgb)[: self.codec.n_bits].astype(np.float64)
        soft = 1.0 / (1.0 + np.exp(-np.clip(raw, -30, 30)))
        found = self.codec.decode(soft, max_candidates=self.max_candidates)
        bound = self.codec.false_accept_bound(found.candidates if found else self.max_candidates)
        if found is None:
            return WatermarkDetection(None, None, self.method, bound)
        return WatermarkDetection(found.wm_id, bit_accuracy(soft, found), self.method, bound,
                                  corrected_bits=found.flipped, confidence=1.0 - bound)


def _to_model(rgb: NDArray[np.uint8], side: int) -> NDArray[np.float32]:
    """(H, W, 3) uint8 -> (1, 3, side, side) float32 in [-1, 1] (area when shrinking, like the
    antialiased bilinear resize TrustMark's own code uses)."""
    shrink = side * side < rgb.shape[0] * rgb.shape[1]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    small = cv2.resize(rgb, (side, side), interpolation=interpolation).astype(np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(small.transpose(2, 0, 1)[None])
