"""Why: a released video must carry a payload that leads back to its decision, survive the
re-encoding every platform applies, and cost little next to decode + encode. Marking every
frame with the image watermark costs 2.4–7.5x real time at 720p, so video has its own mark.

Design (spread spectrum on a resolution-independent grid):

* The frame is divided into a grid of ``rows x cols`` cells (``cols = round(rows * W / H)``),
  so the grid depends only on the aspect ratio, not the resolution. Every cell gets a keyed
  pseudo-random chip (+-1) and one payload bit (a keyed, balanced assignment: every bit owns
  the same number of cells spread over the whole frame).
* The mark is ``strength * chip * (+1 if bit else -1)`` per cell, upsampled smoothly to the
  frame size: a faint, static, grain-like low/mid-frequency luma pattern. Because it depends
  only on (size, id) it is computed once; marking a frame is two saturating uint8 adds on the
  Y plane (well under a millisecond at 720p). It is static on purpose: H.264 P-frames carry a
  static pattern almost for free, and a static pattern does not flicker.
* Detection (blind: no id needed) downsamples each frame's luma to the grid (area average: the
  matched filter of the upsampling), removes the local mean (the host image's low frequencies),
  correlates with the chips and sums per bit, then over frames (temporal redundancy: every
  frame carries the whole payload, so any sampled frames will do, and more frames = more
  robustness).
* Payload: the image watermark's id space (`gateway.provenance.payload.DWT_PAYLOAD`: 40-bit id
  + 32-bit check, whitened). A detection must pass two independent gates: the per-bit
  correlations must agree in magnitude (score = mean|S| / std|S|; about 1.3 for unmarked
  video, whose correlations are zero-mean noise, and >= `min_score` required), and the decoded
  word must pass the 32-bit check (at most `max_candidates` soft-decision candidates, so
  P(false accept) <= max_candidates * 2**-32 even before the score gate).

Limits: the grid is anchored to the frame edges, so cropping or letter-boxing breaks
detection; scaling that keeps the aspect ratio does not.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from gateway.provenance.payload import DWT_PAYLOAD, PayloadCodec

__all__ = ["FrameMarker", "VideoWatermarkDetection", "VideoWatermarker", "detect_in_file", "luma_of", "refresh_for",
           "strength_for"]

_DEFAULT_KEY = b"consentgate/video-watermark/v1"
GRID_LADDER = (48, 72, 96, 144)
CELL_PX = 5.0


@dataclass(frozen=True)
class VideoWatermarkDetection:
    """`wm_id` is None unless both gates passed. `confidence` estimates P(every payload bit is
    right) from the score; `score` is the raw statistic; `frames_used` excludes flat frames."""

    wm_id: int | None
    confidence: float
    frames_used: int
    score: float = 0.0


@dataclass(frozen=True)
class _Grid:
    rows: int
    cols: int
    chips: NDArray[np.float32]  # (rows, cols) of +-1
    bit_of_cell: NDArray[np.intp]  # (rows * cols,) payload bit index per cell


def strength_for(base: float, width: int, height: int) -> float:
    """The marking strength for a frame size: `base` at 720p and above, raised by
    sqrt(720 / short side) below (at most 2x), because a smaller frame has fewer cells per
    payload bit and H.264 removes more of a faint pattern there. Measured (docs/video.md):
    at 480x270 and 320x240 a base-2 mark did not survive the gateway's own crf-23 encode,
    the scaled one does."""
    short = max(1, min(width, height))
    return float(min(16.0, base * min(2.0, max(1.0, math.sqrt(720 / short)))))


def refresh_for(width: int, height: int) -> int:
    """How often (in frames) to recompute the informed field at this size. At 720p and above,
    every 15 frames: measured on 10 s of 720p30, ~0.7 s less CPU per 10 s and equal or better
    robustness than every frame. Below, every frame: with fewer cells per bit the per-frame
    host cancellation is what keeps a small, moving video decodable (docs/video.md)."""
    return 15 if min(width, height) >= 720 else 1


def luma_of(frame: np.ndarray) -> np.ndarray:
    """A 2-D luma plane from a Y plane (returned as is) or an RGB uint8 frame."""
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected a 2-D luma plane or an RGB frame, got shape {frame.shape}")


class FrameMarker(Protocol):
    """What the encoder path needs from a video mark: which frames it touches and how."""

    @property
    def wm_id(self) -> int | None: ...

    def marks(self, frame_index: int) -> bool: ...

    def mark_luma(self, y_plane: np.ndarray, frame_index: int = 0) -> np.ndarray: ...

    def wants_reference(self, frame_index: int) -> bool:
        """Whether the encoder should code this (just marked) frame as a P-frame."""
        ...


class VideoWatermarker:
    """Marks luma planes with `wm_id` and detects marks. Holds derived, per-size caches and the
    field it is marking with: use one instance per video being marked."""

    def __init__(self, wm_id: int | None = None, *, strength: float = 2.5, key: bytes = _DEFAULT_KEY,
                 grid_rows: Sequence[int] = GRID_LADDER, codec: PayloadCodec = DWT_PAYLOAD,
                 min_score: float = 2.5, max_candidates: int = 16, max_correction: float = 1.5,
                 refresh_every: int = 1) -> None:
        if strength <= 0 or strength > 16:
            raise ValueError("strength is in luma levels, 0 < strength <= 16")
        if not grid_rows or min(grid_rows) < 8:
            raise ValueError("grid_rows needs at least one entry, each at least 8")
        self.strength = float(strength)
        self.grid_rows = tuple(sorted(set(grid_rows)))
        self.codec = codec
        self.min_score = min_score
        self.max_candidates = max_candidates
        self._key = key
        self._bits = None if wm_id is None else codec.encode(wm_id)
        self._signs = np.zeros(codec.n_bits) if self._bits is None else self._bits * 2.0 - 1.0
        self.max_correction = max_correction
        self.wm_id = wm_id
        if refresh_every < 1:
            raise ValueError("refresh_every must be at least 1")
        self.refresh_every = refresh_every
        self._field: tuple[tuple[int, int], int, np.ndarray, np.ndarray] | None = None
        self._grids: dict[tuple[int, int], _Grid] = {}
        self._gains: dict[tuple[int, int], float] = {}

    # -- shared geometry -------------------------------------------------------------------
    def rows_for(self, height: int) -> int:
        """The grid the marker uses at this height: the finest ladder entry with cells of at
        least `CELL_PX` pixels (measured: ~5 px cells survive H.264 re-encoding best)."""
        fitting = [r for r in self.grid_rows if height / r >= CELL_PX]
        return max(fitting) if fitting else min(self.grid_rows)

    def _grid(self, height: int, width: int, rows: int | None = None) -> _Grid:
        rows = rows or self.rows_for(height)
        cols = max(8, round(rows * width / height))
        grid = self._grids.get((rows, cols))
        if grid is None:
            seed = hashlib.sha256(self._key + f"/grid/{rows}x{cols}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(seed[:16], "big"))
            n_cells = rows * cols
            chips = rng.choice(np.array([-1.0, 1.0], np.float32), size=(rows, cols))
            bit_of_cell = rng.permutation(np.arange(n_cells) % self.codec.n_bits)
            grid = _Grid(rows, cols, chips, bit_of_cell.astype(np.intp))
            self._grids[(rows, cols)] = grid
        return grid

    # -- marking ---------------------------------------------------------------------------
    def _gain(self, height: int, width: int) -> float:
        """How much of a cell pattern's amplitude the detector sees at this frame size."""
        gain = self._gains.get((height, width))
        if gain is None:
            grid = self._grid(height, width)
            full = cv2.resize(grid.chips, (width, height), interpolation=cv2.INTER_CUBIC)
            seen = self._correlate(full, grid)
            gain = float(seen.sum()) / grid.chips.size
            self._gains[(height, width)] = gain
        return gain

    def marks(self, frame_index: int) -> bool:
        """Every frame carries this mark (see `sparsemark.SparseMark` for one that skips frames)."""
        return True

    def wants_reference(self, frame_index: int) -> bool:
        """Never: the encoder places frame types itself."""
        return False

    def mark_luma(self, y_plane: np.ndarray, frame_index: int = 0) -> np.ndarray:
        """A marked copy of a uint8 Y plane (H, W); frames of one video come in order.

        Informed embedding: the frame's own correlation with each bit's chips (the host
        interference the detector would see) is measured on the grid and cancelled, up to
        `max_correction` x strength per cell, so even one frame decodes cleanly. The field is
        recomputed every `refresh_every` frames (from the frame at that index) and reused in
        between: marking a frame is then two saturating uint8 operations, and a field that
        holds still for half a second costs H.264 fewer bits than one that changes every frame
        (see `refresh_for`). Every frame carries the same payload.
        """
        if self._bits is None:
            raise ValueError("this VideoWatermarker has no wm_id: it can detect but not mark")
        if y_plane.dtype != np.uint8 or y_plane.ndim != 2:
            raise ValueError("mark_luma takes a 2-D uint8 Y plane")
        height, width = y_plane.shape
        current = self._field
        if (current is None or current[0] != (height, width) or frame_index % self.refresh_every == 0
                or abs(frame_index - current[1]) >= self.refresh_every):
            field = self._informed_field(y_plane)
            positive = np.clip(np.rint(field), 0, 255).astype(np.uint8)
            negative = np.clip(np.rint(-field), 0, 255).astype(np.uint8)
            current = self._field = ((height, width), frame_index, positive, negative)
        return cv2.subtract(cv2.add(y_plane, current[2]), current[3])

    def _informed_field(self, y_plane: np.ndarray) -> np.ndarray:
        height, width = y_plane.shape
        grid = self._grid(height, width)
        host = self._correlate(y_plane, grid)
        per_bit = grid.chips.size / self.codec.n_bits
        limit = self.max_correction * self.strength
        correction = np.clip(-host / (self._gain(height, width) * per_bit), -limit, limit)
        weights = self._signs * self.strength + correction
        cells = grid.chips * weights[grid.bit_of_cell].reshape(grid.rows, grid.cols).astype(np.float32)
        return np.asarray(cv2.resize(cells, (width, height), interpolation=cv2.INTER_CUBIC))

    # -- detection -------------------------------------------------------------------------
    def _correlate(self, plane: np.ndarray, grid: _Grid) -> np.ndarray:
        """Unnormalised per-bit correlation of a full-size plane with the chips."""
        return self._correlate_cells(self._residual(plane, grid), grid)

    @staticmethod
    def _residual(plane: np.ndarray, grid: _Grid) -> np.ndarray:
        cells = cv2.resize(plane, (grid.cols, grid.rows), interpolation=cv2.INTER_AREA).astype(np.float32)
        return cells - cv2.blur(cells, (3, 3), borderType=cv2.BORDER_REFLECT)

    def _correlate_cells(self, residual: np.ndarray, grid: _Grid) -> np.ndarray:
        products = (residual * grid.chips).reshape(-1)
        return np.bincount(grid.bit_of_cell, weights=products, minlength=self.codec.n_bits)

    def frame_correlations(self, frame: np.ndarray, rows: int | None = None) -> np.ndarray | None:
        """Per-bit correlations of one frame (Y plane or RGB) on the grid with `rows` rows (the
        marker's choice for this size by default), normalised to unit noise; None for a flat
        frame, which carries no evidence either way."""
        y = luma_of(frame)
        grid = self._grid(y.shape[0], y.shape[1], rows)
        residual = self._residual(y, grid)
        spread = float(residual.std())
        if spread < 0.05:
            return None
        per_bit = residual.size / self.codec.n_bits
        return self._correlate_cells(residual, grid) / (spread * math.sqrt(per_bit))

    def detect(self, frames: Iterable[np.ndarray]) -> VideoWatermarkDetection:
        """Blind detection over frames (Y planes or RGB of one size). Every grid of the ladder
        is tried (the video may have been rescaled); the best-scoring valid one wins, and each
        try counts against the false-accept budget (len(ladder) x max_candidates words)."""
        totals = {rows: np.zeros(self.codec.n_bits, np.float64) for rows in self.grid_rows}
        used = 0
        for frame in frames:
            y = luma_of(frame)
            evidence = False
            for rows in self.grid_rows:
                if y.shape[0] / rows < 2.0:
                    continue  # cells under 2 px: this frame cannot hold that grid
                corr = self.frame_correlations(y, rows)
                if corr is not None:
                    totals[rows] += corr
                    evidence = True
            used += evidence
        best = VideoWatermarkDetection(None, 0.0, used, 0.0)
        for total in totals.values():
            found = self.decide(total, used)
            if (found.wm_id is not None, found.score) > (best.wm_id is not None, best.score):
                best = found
        return best

    def decide(self, total: np.ndarray, frames_used: int) -> VideoWatermarkDetection:
        """Turn summed per-bit correlations into a detection (both gates; see module docstring)."""
        magnitude = np.abs(total)
        spread = float(magnitude.std())
        if frames_used == 0 or spread == 0.0 or not np.isfinite(spread):
            return VideoWatermarkDetection(None, 0.0, frames_used, 0.0)
        score = float(magnitude.mean()) / spread
        bit_error = 0.5 * math.erfc(score / math.sqrt(2.0))
        confidence = (1.0 - bit_error) ** self.codec.n_bits
        if score < self.min_score:
            return VideoWatermarkDetection(None, confidence, frames_used, score)
        soft = 1.0 / (1.0 + np.exp(np.clip(-2.0 * total / spread, -60.0, 60.0)))
        found = self.codec.decode(soft, max_candidates=self.max_candidates)
        if found is None:
            return VideoWatermarkDetection(None, confidence, frames_used, score)
        return VideoWatermarkDetection(found.wm_id, confidence, frames_used, score)


def detect_in_file(path: str | os.PathLike[str], fps: float = 2.0) -> VideoWatermarkDetection:
    """Blind detection over frames sampled from a video file at `fps` (plus scene starts): what
    a verifier runs on a video that may have lost its C2PA manifest. Ids are recorded under
    the method "video-luma" (`gateway.provenance.lookup_watermark`)."""
    from gateway.video.sampling import sample_frames

    return VideoWatermarker().detect(s.rgb for s in sample_frames(path, fps=fps))
