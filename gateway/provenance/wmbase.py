"""Why: the types every watermark method shares (the Protocol, the detection record, the fault
hook, the size check) live apart from the methods so each method module can import them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from gateway.provenance.errors import WatermarkError
from gateway.provenance.payload import DecodedPayload, PayloadCodec

__all__ = [
    "DETECT_BUDGET", "DETECT_MIN_AREA", "MIN_AREA", "MIN_SIDE", "WatermarkDetection", "WatermarkFaults",
    "Watermarker", "bit_accuracy", "check_image",
]

MIN_AREA = 256 * 256
MIN_SIDE = 64
DETECT_MIN_AREA = MIN_AREA // 4  # detection also reads copies resized by half
DETECT_BUDGET = 256  # candidate payload words per detect() call: 256 * 2**-32 = 2**-24


@dataclass
class WatermarkFaults:
    """Fault hook for tests: set ``fail_next`` and the next embed/detect raises."""

    fail_next: bool = False
    fail_always: bool = False

    def check(self, what: str) -> None:
        if self.fail_always or self.fail_next:
            self.fail_next = False
            raise WatermarkError(f"injected fault in watermark {what}")


@dataclass(frozen=True)
class WatermarkDetection:
    """What ``detect`` found. ``wm_id`` is None when no valid payload was present."""

    wm_id: int | None
    bit_accuracy_estimate: float | None
    method: str
    false_accept_bound: float = 0.0  # P(an unmarked image gives a valid id) for this call
    needs_confirmation: bool = False  # True when the bound is too weak to name a decision alone
    scale: float = 1.0  # the rescaling under which the payload was read
    corrected_bits: int = 0
    rotation_deg: float = 0.0  # the rotation undone before decoding (geometry-searching marks)
    confidence: float | None = None  # 1 - false_accept_bound when an id was found
    sync_z: float | None = None  # sync correlation peak in standard deviations (unmarked: ~3.5-5)
    # where the copy sits in the marked image: lattice basis vectors b1, b2 (copy pixels per tile)
    # and the copy's origin in the tile grid; marks that can localise a copy set it
    placement: tuple[tuple[float, float], tuple[float, float], tuple[int, int]] | None = None


@runtime_checkable
class Watermarker(Protocol):
    """One image mark (the ``watermark`` family; registered in ``gateway.provenance.marks``).

    ``method`` and ``version`` are recorded with every release; ``codec`` says how an id becomes
    the embedded bits. ``embed`` returns a marked copy (raises ``WatermarkError`` on images it
    cannot mark); ``detect`` never raises on an unmarked image, it reports ``wm_id=None``.
    """

    method: str
    version: str
    codec: PayloadCodec
    faults: WatermarkFaults

    def embed(self, rgb: NDArray[np.uint8], wm_id: int) -> NDArray[np.uint8]: ...

    def detect(self, rgb: NDArray[np.uint8]) -> WatermarkDetection: ...


def check_image(rgb: NDArray[Any], method: str, *, min_area: int = MIN_AREA,
                min_side: int = MIN_SIDE) -> NDArray[np.uint8]:
    """Validate shape and size; return a C-contiguous uint8 RGB array."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise WatermarkError(f"{method}: expected an RGB array of shape (H, W, 3)")
    height, width = rgb.shape[:2]
    if height * width < min_area or min(height, width) < min_side:
        raise WatermarkError(
            f"{method}: image {width}x{height} is below the minimum size "
            f"({min_area} pixels, sides >= {min_side})"
        )
    if rgb.dtype != np.uint8:
        raise WatermarkError(f"{method}: expected uint8 pixels, got {rgb.dtype}")
    return np.ascontiguousarray(rgb)


def bit_accuracy(received_soft: NDArray[np.float64], found: DecodedPayload) -> float:
    return float(((received_soft > 0.5).astype(np.uint8) == found.bits).mean())
