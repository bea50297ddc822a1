"""Invisible watermarks whose payload leads back to a decision.

Why: C2PA metadata is stripped by most re-uploads; the watermark survives in the pixels, and
its payload (an id kept in ``provenance_watermarks``) still leads to the decision. Every
method implements the small ``Watermarker`` Protocol and is registered by name in
``gateway.provenance.marks`` (the ``watermark`` family), so policies pick one by name.

- ``tileSync`` (the default; ``tilesync``): a self-synchronising tiled spread-spectrum mark that
  survives re-encodes, resizes, crops and small rotations (figures in docs/api.md).
- ``dwtDctSvd`` (the default before tileSync): invisible-watermark's DWT-DCT-SVD scheme (vectorised, see
  ``_dwtdctsvd``), 72-bit payload = 40-bit id + 32-bit check, soft-decision correction, and a
  false-accept bound of 2**-24 per ``detect`` call (``payload`` explains the math). Survives
  JPEG q75, a 0.5x resize and brightness changes; not crops.
- ``rivaGan``: invisible-watermark's learned model (see ``rivagan``); survives crops, ~1 s per
  512x512 image, exactly 32 bits -> a 24-bit id + 8-bit check. Its detections carry
  ``needs_confirmation=True``: the caller resolves them against the C2PA manifest or the
  image's perceptual hash before naming a decision.

Images are RGB ``uint8`` arrays (H, W, 3). Images below a method's minimum size raise
``WatermarkError``, which the pipeline turns into a fail-closed deny.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from gateway.provenance import _dwtdctsvd
from gateway.provenance.errors import WatermarkError
from gateway.provenance.payload import DWT_PAYLOAD, PayloadCodec
from gateway.provenance.rivagan import RivaGanWatermarker
from gateway.provenance.wmbase import (
    DETECT_BUDGET,
    DETECT_MIN_AREA,
    MIN_SIDE,
    WatermarkDetection,
    Watermarker,
    WatermarkFaults,
    bit_accuracy,
    check_image,
)

__all__ = ["DwtDctSvdWatermarker", "RivaGanWatermarker", "WatermarkDetection", "WatermarkFaults", "Watermarker"]


class DwtDctSvdWatermarker:
    """DWT-DCT-SVD watermark with a 72-bit error-detecting payload.

    ``strength`` is the quantisation step of the singular value (imwatermark's default 36;
    higher = more robust, lower PSNR). ``detect_strengths`` lists the steps a detector tries
    (marks made under an older policy strength), and ``detect_scales`` the upscalings it tries
    (2.0 recovers a 0.5x resize); the candidate budget is split so that one ``detect`` call
    never checks more than ``DETECT_BUDGET`` words.
    """

    method = "dwtDctSvd"
    version = "1"

    def __init__(self, strength: float = 36.0, *, detect_strengths: tuple[float, ...] | None = None,
                 detect_scales: tuple[float, ...] = (1.0, 2.0), codec: PayloadCodec = DWT_PAYLOAD) -> None:
        if strength <= 0:
            raise ValueError("strength must be positive")
        self.strength = float(strength)
        self.detect_strengths = tuple(detect_strengths or (self.strength,))
        self.detect_scales = detect_scales
        self.codec = codec
        self.faults = WatermarkFaults()
        attempts = len(self.detect_strengths) * len(self.detect_scales)
        self._per_attempt = max(1, DETECT_BUDGET // attempts)

    def embed(self, rgb: NDArray[np.uint8], wm_id: int) -> NDArray[np.uint8]:
        self.faults.check("embed")
        image = check_image(rgb, self.method)
        bits = self.codec.encode(wm_id)
        if _dwtdctsvd.n_blocks(*image.shape[:2]) < 4 * bits.shape[0]:
            raise WatermarkError(f"{self.method}: image too small for a {bits.shape[0]}-bit payload")
        return _dwtdctsvd.embed(image, bits, self.strength)

    def detect(self, rgb: NDArray[np.uint8]) -> WatermarkDetection:
        self.faults.check("detect")
        image = check_image(rgb, self.method, min_area=DETECT_MIN_AREA, min_side=MIN_SIDE // 2)
        used = 0
        for scale in self.detect_scales:
            scaled = image if scale == 1.0 else _rescale(image, scale)
            for strength in self.detect_strengths:
                soft = _dwtdctsvd.read_soft(scaled, self.codec.n_bits, strength)
                found = self.codec.decode(soft, max_candidates=self._per_attempt)
                used += self._per_attempt
                if found is not None:
                    return WatermarkDetection(
                        wm_id=found.wm_id, bit_accuracy_estimate=bit_accuracy(soft, found),
                        method=self.method, false_accept_bound=self.codec.false_accept_bound(used),
                        scale=scale, corrected_bits=found.flipped,
                    )
        return WatermarkDetection(None, None, self.method, self.codec.false_accept_bound(used))


def _rescale(rgb: NDArray[np.uint8], scale: float) -> NDArray[np.uint8]:
    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    out = np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
    return out
