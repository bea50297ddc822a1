"""The first layout of "video-sparse" (version 1, 2026-12-07), kept so that its releases still
verify by watermark: `sparsemark.detect_sparse_in_file` falls back to `detect_sparse_v1_in_file`
when the current layout (version 2, `sparsemark.SparseMark`) finds nothing. New releases are
marked with version 2 only; this module no longer marks in production.

Why it was built: the first video mark ("video-luma", `watermark.py`) adds a faint static grain to *every*
frame. H.264 predicts each frame from the previous one moved with the content, so a grain that
stands still while the picture moves is coded again in every P-frame: the released MP4 was
1.8-2.5x the size of the same clip encoded without it. This mark ("video-sparse") is designed
around what the encoder does instead of against it:

* **A subset of frames.** Only every `EVERY`-th frame (15: twice a second at 30 fps) gets the
  grain; the frames in between are passed to the encoder untouched. The encoder codes the grain
  once, in the marked frame; the next frames are predicted from that reconstruction, and the
  difference to the unmarked source (about -strength levels) falls in x264's dead zone, so the
  grain rides along with the content at no cost until the next marked frame. Measured on 10 s
  of 720p30 (bench clip): marking every frame 1.82x the unmarked size, every 15th frame 1.10x,
  every 30th 1.08x. Frames between two marks carry a mark that has moved with the content, so
  the detector weighs frames by their own evidence (below) instead of trusting every frame.
* **Temporally varying.** Successive marked frames use `VARIANTS` different keyed chip sets
  (variant = marked-frame number mod 4), all carrying the same payload, so an estimate of the
  grain from one stretch of moving video does not fit the next. Measured limit: on a static
  scene x264 leaves the switch between variants in its dead zone too, so the first variant
  stays and averaging frames recovers it (`bench/video.py`, docs/video.md).
* **The cell grain, payload and gates of "video-luma"** (`VideoWatermarker`, one per variant):
  ~5 px cells on a grid tied to the aspect ratio (so scaling keeps it), informed embedding per
  marked frame, the 72-bit `DWT_PAYLOAD` word (40-bit id + 32-bit check), score gate and CRC.

Detection (blind) decodes every frame (up to `max_frames`), and for each frame and grid
size takes the per-bit correlations of the variant that scores best (score = mean |S| / std |S|
over the 72 bits: ~1.3 on unmarked frames, 2-10 on a marked frame and the frames just after
it). Each frame's correlations are weighted by its excess score (`max(0, score - BIAS)`) and
summed: frames far from a mark, whose grain has moved off the grid, count for little. (Energy
would not do: informed embedding cancels the host's share, so a marked frame's energy is no
larger than an unmarked one's; the agreement of the per-bit magnitudes is what shows the mark.)
Limit: the grid is tied to the frame edges, so a crop that keeps the original pixel grid
(cutting 10 % off the sides) breaks detection — measured and reported in docs/video.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

import numpy as np

from gateway.provenance.payload import DWT_PAYLOAD, PayloadCodec
from gateway.video.intake import luma_frames
from gateway.video.watermark import VideoWatermarkDetection, VideoWatermarker, luma_of

__all__ = ["EVERY", "VARIANTS", "SparseMarkV1", "detect_sparse_v1_in_file"]

EVERY = 15
VARIANTS = 4
BIAS = 1.6  # per-frame score a noise frame reaches (~1.3, ~1.45 as the best of VARIANTS): weight 0 below
_KEY = b"consentgate/video-watermark/sparse/v1"


class SparseMarkV1:
    """Marks every `every`-th Y plane with `wm_id` (frames in order) and detects marks. One
    instance per video being marked (it holds the marking field)."""

    def __init__(self, wm_id: int | None = None, *, strength: float = 2.0, every: int = EVERY,
                 variants: int = VARIANTS, key: bytes = _KEY, codec: PayloadCodec = DWT_PAYLOAD,
                 min_score: float = 2.5) -> None:
        if every < 1 or variants < 1:
            raise ValueError("every and variants must be at least 1")
        self.wm_id = wm_id
        self.every = every
        self.strength = float(strength)
        self.codec = codec
        self.variants = [VideoWatermarker(wm_id, strength=strength, key=key + b"/%d" % k, codec=codec,
                                          min_score=min_score, refresh_every=1) for k in range(variants)]

    def marks(self, frame_index: int) -> bool:
        """Whether frame `frame_index` carries the grain (the others go to the encoder untouched)."""
        return frame_index % self.every == 0

    def wants_reference(self, frame_index: int) -> bool:
        """Never: the encoder places frame types itself."""
        return False

    def mark_luma(self, y_plane: np.ndarray, frame_index: int = 0) -> np.ndarray:
        """A marked copy of a uint8 Y plane on marked frames; the plane itself otherwise."""
        if self.wm_id is None:
            raise ValueError("this SparseMark has no wm_id: it can detect but not mark")
        if not self.marks(frame_index):
            return y_plane
        variant = self.variants[(frame_index // self.every) % len(self.variants)]
        return variant.mark_luma(y_plane, frame_index)

    # -- detection -------------------------------------------------------------------------
    def frame_evidence(self, frame: np.ndarray) -> dict[int, tuple[float, np.ndarray]]:
        """Per grid size (rows): (excess energy weight, per-bit correlations of the best variant)."""
        y = luma_of(frame)
        bits = self.codec.n_bits
        out: dict[int, tuple[float, np.ndarray]] = {}
        first = self.variants[0]
        for rows in first.grid_rows:
            if y.shape[0] / rows < 2.0:
                continue
            grids = [v._grid(y.shape[0], y.shape[1], rows) for v in self.variants]
            residual = first._residual(y, grids[0])  # same cells for every variant: computed once
            spread = float(residual.std())
            if spread < 0.05:
                continue  # a flat frame carries no evidence either way
            norm = spread * math.sqrt(residual.size / bits)
            best: tuple[float, np.ndarray] | None = None
            for variant, grid in zip(self.variants, grids, strict=True):
                corr = variant._correlate_cells(residual, grid) / norm
                magnitude = np.abs(corr)
                score = float(magnitude.mean()) / max(float(magnitude.std()), 1e-9)
                if best is None or score > best[0]:
                    best = (score, corr)
            if best is not None:
                out[rows] = (max(0.0, best[0] - BIAS), best[1])
        return out

    def totals(self, frames: Iterable[np.ndarray], probe: int | None = None) -> tuple[dict[int, np.ndarray], int]:
        """Per grid size, the evidence-weighted per-bit sums over `frames`; and how many frames
        carried any evidence (flat ones do not). After the first `probe` frames, only frames
        within one of the best residue modulo `every` (where the marked frames were found) are
        examined — the others are skipped, not weighed — unless the probe found no evidence.
        `probe=None` (the default) examines every frame."""
        totals: dict[int, np.ndarray] = {}
        by_residue = np.zeros(self.every)
        keep: set[int] | None = None
        used = 0
        for index, frame in enumerate(frames):
            if probe is not None and index == probe and by_residue.max() > 0:
                best = int(np.argmax(by_residue))
                keep = {(best + d) % self.every for d in (-1, 0, 1)}
            if keep is not None and index % self.every not in keep:
                continue
            evidence = self.frame_evidence(frame)
            used += bool(evidence)
            by_residue[index % self.every] += max((w for w, _ in evidence.values()), default=0.0)
            for rows, (weight, corr) in evidence.items():
                if weight > 0:
                    totals[rows] = totals.get(rows, np.zeros(self.codec.n_bits)) + weight * corr
        return totals, used

    def detect(self, frames: Iterable[np.ndarray], probe: int | None = None) -> VideoWatermarkDetection:
        """Blind detection over frames (Y planes or RGB, in order, of one size); `probe`: see `totals`."""
        return self.judge(*self.totals(frames, probe))

    def judge(self, totals: dict[int, np.ndarray], used: int) -> VideoWatermarkDetection:
        """The best grid's detection (both gates of `VideoWatermarker.decide`)."""
        best = VideoWatermarkDetection(None, 0.0, used, 0.0)
        for total in totals.values():
            found = self.variants[0].decide(total, used)
            if (found.wm_id is not None, found.score) > (best.wm_id is not None, best.score):
                best = found
        return best

    def bit_accuracy(self, frames: Iterable[np.ndarray], wm_id: int) -> float:
        """Fraction of payload bits the weighted sums get right for `wm_id` (benchmarks)."""
        return self.accuracy_of(self.totals(frames)[0], wm_id)

    def accuracy_of(self, totals: dict[int, np.ndarray], wm_id: int) -> float:
        """The best grid's fraction of right bits for `wm_id` (0.5 when nothing was seen)."""
        want = self.codec.encode(wm_id).astype(np.float64) * 2.0 - 1.0
        scores = [float(np.mean(np.sign(t) == want)) for t in totals.values() if np.any(t)]
        return max(scores) if scores else 0.5


def detect_sparse_v1_in_file(path: str | os.PathLike[str], max_frames: int = 900) -> VideoWatermarkDetection:
    """Blind "video-sparse" detection over the first `max_frames` frames: what a verifier runs.
    First only the frames near the marked ones (found in the first 45 frames); when that finds
    no id (e.g. a frame-rate change moved the marks off that rhythm), every frame."""
    found = SparseMarkV1().detect(luma_frames(path, max_frames), probe=3 * EVERY)
    if found.wm_id is None:
        found = SparseMarkV1().detect(luma_frames(path, max_frames))
    return found
