"""Why: hash lists (StopNCII-style "never pass this image") need a perceptual hash that is
robust to re-encoding and resizing and that industry lists already use: Meta's PDQ (256 bits).
`hashes` returns the 8 dihedral variants (identity first) so a flipped or rotated copy of a
listed image still matches within the usual 31-bit Hamming distance.

Images are resized to at most `max_side` (default 512) first: PDQ downsamples to 64x64 anyway,
and measured differences are a few bits while the cost drops ~7x on 1024².
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from classifiers._common import Options, check_rgb
from classifiers.base import ModelError, ModelInfo

PDQ_BITS = 256
# Order of pdqhash.compute_dihedral's hashes.
DIHEDRAL_ORDER = ("identity", "rot90", "rot180", "rot270", "flip_x", "flip_y", "flip_plus1", "flip_minus1")


def hamming(a: str, b: str) -> int:
    """Hamming distance between two hex hashes of equal length."""
    if len(a) != len(b):
        raise ValueError("hashes differ in length")
    return (int(a, 16) ^ int(b, 16)).bit_count()


def bits_to_hex(bits: np.ndarray) -> str:
    """pdqhash's bit vector (most significant bit first) -> 64 hex chars (PDQ's canonical form)."""
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


class PdqHasher:
    """Options: `max_side` (default 512; 0 = hash at full size)."""

    bits = PDQ_BITS

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "pdq") -> None:
        opts = Options(name, options, {"max_side"})
        self._max_side = opts.positive_int("max_side", 512, minimum=0)
        try:
            import pdqhash
        except ImportError as exc:
            raise ModelError(f"{name}: the 'pdqhash' package is not importable: {exc}") from exc
        self._pdq = pdqhash
        # No weights: the version digests the algorithm's identity (package version + the option
        # that changes its output), so it is the same on every platform.
        from importlib.metadata import version

        identity = f"pdqhash=={version('pdqhash')};max_side={self._max_side}"
        self.info = ModelInfo(name=name, version=hashlib.sha256(identity.encode()).hexdigest()[:16])

    def hashes(self, image: np.ndarray) -> list[str]:
        return self.hashes_with_quality(image)[0]

    def hashes_with_quality(self, image: np.ndarray) -> tuple[list[str], int]:
        """The 8 dihedral hashes and PDQ's quality (0-100; below ~50 the hash is unreliable)."""
        img = _shrink(check_rgb(image), self._max_side)
        try:
            vectors, quality = self._pdq.compute_dihedral(img)
        except Exception as exc:
            raise ModelError(f"{self.info.name}: pdq failed: {exc}") from exc
        return [bits_to_hex(v) for v in vectors], int(quality)


def _shrink(img: np.ndarray, max_side: int) -> np.ndarray:
    side = max(img.shape[:2])
    if max_side <= 0 or side <= max_side:
        return img
    import cv2

    scale = max_side / side
    size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    return np.ascontiguousarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA))
