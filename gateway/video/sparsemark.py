"""Why: a released video must lead back to its decision after the copy was re-encoded, scaled
down or cropped, must cost little in size (users pay for every byte of every video), and must
not be removable by averaging the frames of a static scene. This is "video-sparse", version 3:
the image mark's self-synchronising tile (`gateway.provenance.tilesync`, numerics in
`_tilesync`, whose functions are imported here, not copied) put on a subset of frames, at a
keyed cyclic shift that changes on every marked frame.

* **A subset of frames.** Only every `EVERY`-th frame (15: twice a second at 30 fps) gets the
  mark; the frames in between go to the encoder untouched. x264 codes the mark once, in the
  marked frame; the next frames are predicted from that reconstruction and their difference
  to the unmarked source falls in the encoder's dead zone, so the mark rides along with the
  content at no cost until the next marked frame (the reason the released file is close to
  the unmarked encode's size; every-frame marks cost 1.8-2.5x).
* **The tileSync tile** (128 x 128 cells of 4 px at a working resolution, 256 sync cells, the
  72-bit payload (`DWT_PAYLOAD`: 40-bit id + 32-bit check) rate-1/3 convolutionally coded
  over the other cells, `_tilesync.tile_for`), repeated over the Y plane, shaped by the image
  mark's perceptual mask and scaled to `strength` luma levels RMS. The working resolution is
  the frame scaled to a height from `WORK_LADDER` (the largest at most 0.8 x the frame's
  height: cells of >= 5 px, which survive H.264), so a copy scaled as a whole is read at the
  same ladder height with the original geometry. A **crop** shifts the repetition (and, read
  at a ladder height, scales it): the autocorrelation lattice (`_tilesync.find_lattices`)
  gives the period, folding every tile onto one (`fold`) averages the host out, and the sync
  cells give the shift (`align`) — per frame, so content motion between marked frames does
  not matter either.
* **A keyed shift per marked frame (version 3).** Because the detector finds the tile's shift
  in every frame anyway, each marked frame carries the tile cyclically shifted by a keyed
  (rows, cols) offset (`shift_of`; the key is a random seed per release, so nobody can
  predict the sequence, and the detector needs none of it). The time-average of a static
  scene then holds a mixture of ~7 differently shifted patterns per 100 frames, each at a
  seventh of its strength, instead of the pattern; subtracting it leaves every frame's own
  pattern (docs/video.md: the estimate-by-averaging attack). Unlike sign flips (tried: a
  partly coded flip *cancels* the mark), a partly coded change leaves a mixture of two shifted
  tiles, and each of them decodes alone.
* **Static scenes get reference frames.** On a static scene x264 makes most frames B-frames
  and skips a marked B-frame's change, so the first frame's pattern would stay for seconds.
  A marked frame whose content stands still since the previous marked frame (at least half
  of an 80 x 45 thumbnail within `STILL_LEVEL` levels) asks the encoder for a P-frame
  (`wants_reference`; `transcode` sets the picture type), which codes the new shift. Moving
  content never asks (its marked frames are coded anyway where they land on a P-frame), so
  the cost stays on static scenes only.
Detection (blind) reads frames in order. For each geometry hypothesis — the original geometry
at every ladder height (copies scaled as a whole), then, if none decodes, the lattices found in
the first frames (crops), ranked by the sync they read — each frame's residual is folded,
aligned on the sync's two strongest peaks (either sign; a frame may hold the previous and the
new shift), and each peak's per-coded-bit scores are weighted by `max(0, z - Z_BIAS)` (z: the
peak's z-score, ~4-5 on an unmarked frame, 10-20 on a marked one) and summed; frames far from a
mark, whose copy of the mark has moved with the content, count for little. After the first
`PROBE` frames (up to `PROBES` probes while no frame has shown a mark: a re-encode can wash out
the first I-frame's mark) only the frames near the marked ones (their index modulo `EVERY`)
are read, under the best hypothesis. The sums
go through soft Viterbi decoding (`fec`) to one word, which must pass the 32-bit check: P(an
unmarked video yields an id) <= decodes x 2**-32 (at most `MAX_DECODES`).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import cv2
import numpy as np
import scipy.fft
from numpy.typing import NDArray

from gateway.provenance import _tilesync as ts
from gateway.provenance import fec
from gateway.provenance.payload import DWT_PAYLOAD, PayloadCodec
from gateway.video.intake import luma_frames
from gateway.video.sparsemark_v1 import SparseMarkV1, detect_sparse_v1_in_file
from gateway.video.watermark import VideoWatermarkDetection, luma_of

__all__ = ["EVERY", "METHOD", "VERSION", "WORK_LADDER", "version_for", "Scan", "SparseMark", "detect_sparse_in_file",
           "luma_frames"]

METHOD = "video-sparse"
VERSION = "3"
EVERY = 15
WORK_LADDER = (144, 216, 288, 432, 576)
Z_BIAS = 5.5  # sync z-score an unmarked frame reaches (max 5.0 over 240 unmarked 720p frames): weight 0 below
PROBE = 3 * EVERY
PROBES = 4  # while no frame shows a mark, every hypothesis is read on up to this many probes' frames
MIN_EVIDENCE = 2.0  # the weight (sum of z - Z_BIAS) that counts as a mark seen: one frame at z 7.5
SMALL_ROWS = 360  # frames with fewer rows hold under 2 tiles: they get version 1's grid (see `mark_luma`)
MAX_LATTICES = 6
MAX_DECODES = 24
PEAKS = 2  # sync peaks read per frame and hypothesis (a frame may hold the previous and the new shift)
PEAK_GAP = 4  # px at the working resolution: one cell, the sync correlation's main lobe
STILL_LEVEL = 1.0  # luma levels: a thumbnail cell this close to the previous marked frame's stands still
STILL_SHARE = 0.5  # the share of still cells that makes a marked frame "static" (it asks for a P-frame)
THUMB = (80, 45)
_KEY = b"consentgate/video-watermark/sparse/v2"



def version_for(height: int) -> str:
    """The mark version a release of frames `height` rows high carries (recorded in its C2PA
    soft binding): version 1's grid under `SMALL_ROWS`, the shifted tile (`VERSION`) from there
    up. Version 2 (the tile, unshifted) is read by the same detector."""
    return "1" if height < SMALL_ROWS else VERSION

def work_height(height: int) -> int:
    """The ladder height a frame of `height` rows is marked at: cells of at least 5 px."""
    fitting = [r for r in WORK_LADDER if r <= 0.8 * height]
    return max(fitting) if fitting else min(WORK_LADDER)


def work_size(height: int, width: int, rows: int) -> tuple[int, int]:
    """(height, width) of the working resolution at ladder height `rows` (aspect kept)."""
    return rows, max(8, round(width * rows / height))


@dataclass(frozen=True)
class Hypothesis:
    """Where to read the mark: a ladder height and the tile lattice at it (identity: the
    copy kept the marked geometry up to a scale)."""

    rows: int
    lattice: ts.Lattice = ts.IDENTITY

    @property
    def label(self) -> str:
        if self.lattice == ts.IDENTITY:
            return f"{self.rows} rows"
        return f"{self.rows} rows, lattice x{self.lattice.scale:.3f} {self.lattice.rotation_deg:+.1f} deg"


@dataclass
class Scan:
    """Per hypothesis, the evidence-weighted sums of coded-bit scores, and the evidence."""

    sums: dict[Hypothesis, NDArray[np.float64]] = field(default_factory=dict)
    weight: dict[Hypothesis, float] = field(default_factory=dict)
    frames: int = 0  # frames read or skipped
    evidence_frames: int = 0  # frames whose sync was seen under some hypothesis
    decodes: int = 0
    decoded: dict[Hypothesis, tuple[float, int | None]] = field(default_factory=dict)  # (weight then, id)
    negative: dict[Hypothesis, float] = field(default_factory=dict)  # evidence of frames read with sign -

    def add(self, hyp: Hypothesis, weight: float, scores: NDArray[np.float64], sign: int = 1) -> None:
        if hyp not in self.sums:
            self.sums[hyp] = np.zeros(scores.shape[0])
            self.weight[hyp] = 0.0
            self.negative[hyp] = 0.0
        if weight > 0:
            self.sums[hyp] += weight * scores
            self.weight[hyp] += weight
            if sign < 0:
                self.negative[hyp] += weight

    def sign_balance(self, hyp: Hypothesis) -> float:
        """The smaller sign's share of the evidence (0.5: balanced; 0: one sign only). A
        diagnostic (bench): whether the encoder kept the sign flips."""
        total = self.weight.get(hyp, 0.0)
        if total <= 0:
            return 0.0
        negative = self.negative.get(hyp, 0.0)
        return min(negative, total - negative) / total


class SparseMark:
    """Marks every `every`-th Y plane with `wm_id` (frames in order) and detects marks (blind).
    `shifts=False, static_references=False` is version 2's marking (measurements, tests)."""

    def __init__(self, wm_id: int | None = None, *, strength: float = 2.0, every: int = EVERY, key: bytes = _KEY,
                 codec: PayloadCodec = DWT_PAYLOAD, max_lattices: int = MAX_LATTICES, flip_signs: bool = False,
                 shifts: bool = True, static_references: bool = True, shift_seed: bytes | None = None,
                 shift_every: int = 1) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        if not 0 < strength <= 16:
            raise ValueError("strength is in luma levels RMS, 0 < strength <= 16")
        self.wm_id = wm_id
        self.every = every
        self.strength = float(strength)
        self.codec = codec
        self.max_lattices = max_lattices
        self.flip_signs = flip_signs
        self.shifts = shifts
        self.shift_every = max(1, shift_every)
        self.static_references = static_references
        self.static_frames = 0  # marked frames that asked for a P-frame (bench diagnostics)
        self._shift_seed = os.urandom(16) if shift_seed is None else shift_seed
        self._thumb: NDArray[np.float32] | None = None
        self._reference_at = -1
        self._key = key
        self._sync_fft: NDArray[np.complex128] | None = None
        self._layout = ts.layout(fec.coded_length(codec.n_bits))
        self._tile = None if wm_id is None else ts.tile_for(fec.conv_encode(codec.encode(wm_id)), self._layout)
        self._tiled: dict[tuple[int, int], NDArray[np.float32]] = {}
        self._buffer: NDArray[np.float32] | None = None  # the full-size pattern, reused frame to frame
        self._small = None if wm_id is None else SparseMarkV1(wm_id, strength=strength, every=every, codec=codec)

    # -- marking ---------------------------------------------------------------------------
    def marks(self, frame_index: int) -> bool:
        """Whether frame `frame_index` carries the mark (the others go to the encoder untouched)."""
        return frame_index % self.every == 0

    def sign_of(self, marked_index: int) -> int:
        """The sign of the `marked_index`-th marked frame: +1 unless `flip_signs`, then keyed
        with pairs (2j, 2j+1) being (+, -) or (-, +), so every two marked frames cancel."""
        if not self.flip_signs:
            return 1
        digest = hashlib.sha256(self._key + b"/sign/%d" % (marked_index // 2)).digest()
        first = 1 if digest[0] & 1 else -1
        return first if marked_index % 2 == 0 else -first

    def shift_of(self, marked_index: int) -> tuple[int, int]:
        """The cyclic shift (rows, cols at the working resolution) of the tile on the
        `marked_index`-th marked frame: keyed by this release's random seed; (0, 0) without `shifts`."""
        if not self.shifts:
            return 0, 0
        epoch = marked_index // self.shift_every
        digest = hashlib.sha256(self._key + b"/shift/" + self._shift_seed + b"/%d" % epoch).digest()
        return digest[0] % ts.TILE, digest[1] % ts.TILE

    def wants_reference(self, frame_index: int) -> bool:
        """Whether the encoder should code frame `frame_index` as a P-frame: a marked frame of a
        static scene (decided by `mark_luma`, which runs first), so the new shift is coded."""
        return frame_index == self._reference_at

    def _note_stillness(self, y_plane: np.ndarray, frame_index: int) -> None:
        thumb = np.asarray(cv2.resize(y_plane, THUMB, interpolation=cv2.INTER_AREA), np.float32)
        previous, self._thumb = self._thumb, thumb
        if previous is None or previous.shape != thumb.shape:
            return
        still = float(np.count_nonzero(cv2.absdiff(thumb, previous) < STILL_LEVEL)) / thumb.size
        if still >= STILL_SHARE:
            self._reference_at = frame_index
            self.static_frames += 1

    def _shifted_tiles(self, wh: int, ww: int, dy: int, dx: int) -> NDArray[np.float32]:
        """The tile repeated over (wh, ww), cyclically shifted by (dy, dx): a window of one tiling
        one tile larger each way, cached per working size (a view; no copy per marked frame)."""
        big = self._tiled.get((wh, ww))
        if big is None:
            assert self._tile is not None
            reps = (-(-wh // ts.TILE) + 1, -(-ww // ts.TILE) + 1)
            self._tiled.clear()  # one working size at a time
            big = self._tiled[(wh, ww)] = np.ascontiguousarray(np.tile(self._tile, reps))
        # np.roll(tile, (dy, dx)) repeated: element (i, j) is tile[(i - dy) % T, (j - dx) % T] = big[T - dy + i, ...]
        oy, ox = (ts.TILE - dy) % ts.TILE, (ts.TILE - dx) % ts.TILE
        return big[oy:oy + wh, ox:ox + ww]

    def _pattern(self, y_plane: np.ndarray, frame_index: int) -> tuple[NDArray[np.float32], float]:
        """(the shaped, unscaled pattern at full size, the factor that scales it to `strength`
        levels RMS with the frame's sign). The full-size buffer is reused: valid until the next call."""
        if self._tile is None:
            raise ValueError("this SparseMark has no wm_id: it can detect but not mark")
        height, width = y_plane.shape
        wh, ww = work_size(height, width, work_height(height))
        dy, dx = self.shift_of(frame_index // self.every)
        tiled = self._shifted_tiles(wh, ww, dy, dx)
        # the mask only weighs the mark (more in texture): a linear resize is enough and 3x cheaper than area
        small = np.asarray(cv2.resize(y_plane, (ww, wh), interpolation=cv2.INTER_LINEAR), np.float32)
        mask = ts.perceptual_mask(small)  # a fresh array: the product goes into it
        pattern = np.multiply(tiled, mask, out=mask)
        if (wh, ww) != (height, width):
            buffer = self._buffer
            if buffer is None or buffer.shape != (height, width):
                buffer = self._buffer = np.empty((height, width), np.float32)
            pattern = np.asarray(cv2.resize(pattern, (width, height), dst=buffer, interpolation=cv2.INTER_LINEAR),
                                 np.float32)
        rms = float(cv2.norm(pattern, cv2.NORM_L2)) / math.sqrt(pattern.size)
        sign = self.sign_of(frame_index // self.every)
        return pattern, sign * self.strength / max(rms, 1e-6)

    def field(self, y_plane: np.ndarray, frame_index: int) -> NDArray[np.float32]:
        """The mark added to a marked frame (float, full size, `strength` levels RMS)."""
        pattern, scale = self._pattern(y_plane, frame_index)
        out: NDArray[np.float32] = pattern * np.float32(scale)
        return out

    def mark_luma(self, y_plane: np.ndarray, frame_index: int = 0) -> np.ndarray:
        """A marked copy of a uint8 Y plane on marked frames; the plane itself otherwise."""
        if self._tile is None:
            raise ValueError("this SparseMark has no wm_id: it can detect but not mark")
        if y_plane.dtype != np.uint8 or y_plane.ndim != 2:
            raise ValueError("mark_luma takes a 2-D uint8 Y plane")
        if not self.marks(frame_index):
            return y_plane
        if y_plane.shape[0] < SMALL_ROWS and self._small is not None:
            # Under 360 rows a frame holds fewer than 2 tiles at the smallest working height, and the
            # tile failed where version 1's grid (one cell per ~5 px, no sync) decoded: a 320x240 clip
            # re-encoded at 400 kbit/s (tests/jobs/test_cli_client.py). Small frames keep version 1,
            # which `detect_sparse_in_file` falls back to; crops of them do not decode.
            return self._small.mark_luma(y_plane, frame_index)
        if self.static_references:
            self._note_stillness(y_plane, frame_index)
        pattern, scale = self._pattern(y_plane, frame_index)
        pattern *= np.float32(scale)  # in place: `field`'s values without another full-size array
        # one saturating add, rounded to nearest (uint8 + float32 -> uint8)
        return np.asarray(cv2.add(y_plane, pattern, dtype=cv2.CV_8U), np.uint8)

    # -- detection -------------------------------------------------------------------------
    @staticmethod
    def residual(y: np.ndarray, rows: int) -> NDArray[np.float32]:
        """The image mark's high-pass residual of a luma plane at ladder height `rows`."""
        height, width = y.shape
        wh, ww = work_size(height, width, rows)
        if (wh, ww) != (height, width):
            interpolation = cv2.INTER_AREA if wh < height else cv2.INTER_LINEAR
            y = cv2.resize(y, (ww, wh), interpolation=interpolation)
        return ts.residual(np.asarray(y, np.float32))

    def read(self, residual: NDArray[np.float32], lattice: ts.Lattice) -> tuple[float, NDArray[np.float64], int]:
        """(sync z-score, per-coded-bit scores, sign) of one frame's residual folded on `lattice`;
        the frame's sign is read from the sync (the better of + and -) and undone."""
        return self.read_peaks(residual, lattice, 1)[0]

    def read_peaks(self, residual: NDArray[np.float32], lattice: ts.Lattice,
                   n: int = PEAKS) -> list[tuple[float, NDArray[np.float64], int]]:
        """Up to `n` readings of one frame, one per sync peak (the strongest first, each further
        one at least `PEAK_GAP` px from those before): a frame can hold two shifted tiles — the
        previous marked frame's, carried along and partly replaced, and the new one — and either
        decodes alone. Each reading: (sync z-score, per-coded-bit scores, sign), as `ts.align`
        and `ts.chip_scores` give them (the sync correlation is computed once for both signs)."""
        folded = ts.fold(residual, lattice)
        if self._sync_fft is None:
            self._sync_fft = np.conj(scipy.fft.rfft2(self._layout.sync))
        corr = scipy.fft.irfft2(scipy.fft.rfft2(folded) * self._sync_fft, s=folded.shape)
        z = (corr - corr.mean()) / (corr.std() + 1e-12)
        strength = np.abs(z)
        out = []
        for _ in range(n):
            peak = int(np.argmax(strength))
            dy, dx = divmod(peak, ts.TILE)
            sign = 1 if z.flat[peak] >= 0 else -1
            aligned = np.roll(folded if sign > 0 else -folded, (-dy, -dx), axis=(0, 1))
            out.append((float(strength.flat[peak]), ts.chip_scores(aligned, self._layout), sign))
            rows = np.arange(dy - PEAK_GAP, dy + PEAK_GAP + 1) % ts.TILE
            cols = np.arange(dx - PEAK_GAP, dx + PEAK_GAP + 1) % ts.TILE
            strength[np.ix_(rows, cols)] = 0.0
        return out

    def _hypotheses(self, height: int) -> list[Hypothesis]:
        """The original geometry at every ladder height a copy of this height can hold (the
        copy is read at most 2.5x enlarged)."""
        return [Hypothesis(rows) for rows in WORK_LADDER if rows <= 2.5 * height]

    def _lattices(self, frames: list[np.ndarray]) -> list[Hypothesis]:
        """Lattice hypotheses from the probe frames (every 3rd: whatever the clip's first frame,
        one of them is a marked frame or one of the two after it). Each candidate is read once in
        the frame it was found in: those whose sync peak stands out there (z above `Z_BIAS`) come
        first, strongest first; then the others, found in several frames first, then by strength.
        (Ranked by counts alone, a mark seen well in one frame only — a crop whose later frames
        hold weaker, re-shifted tiles — lost its lattice to the host's own repetitions.)"""
        if not frames:
            return []
        rows = work_height(frames[0].shape[0])
        found: list[tuple[ts.Lattice, int, float, float]] = []  # (lattice, times seen, best strength, best sync z)
        for y in frames[::3]:
            residual = self.residual(y, rows)
            for lat in ts.find_lattices(residual, n=4):
                z = self.read_peaks(residual, lat, 1)[0][0]
                for i, (seen, count, strength, best) in enumerate(found):
                    if abs(seen.scale - lat.scale) < 0.01 and abs(seen.rotation_deg - lat.rotation_deg) < 0.5:
                        found[i] = (seen, count + 1, max(strength, lat.strength), max(best, z))
                        break
                else:
                    found.append((lat, 1, lat.strength, z))
        found.sort(key=lambda item: (-max(0.0, item[3] - Z_BIAS), -item[1], -item[2]))
        return [Hypothesis(rows, lat) for lat, _, _, _ in found[: self.max_lattices]]

    def _read_into(self, scan: Scan, frames: Iterable[tuple[int, np.ndarray]], hyps: list[Hypothesis],
                   by_residue: NDArray[np.float64] | None = None) -> None:
        for index, y in frames:
            residuals: dict[int, NDArray[np.float32]] = {}
            seen = False
            for hyp in hyps:
                if hyp.rows not in residuals:
                    residuals[hyp.rows] = self.residual(y, hyp.rows)
                for z, scores, sign in self.read_peaks(residuals[hyp.rows], hyp.lattice):
                    weight = max(0.0, z - Z_BIAS)
                    scan.add(hyp, weight, scores, sign)
                    seen = seen or weight > 0
                    if by_residue is not None:
                        by_residue[index % self.every] += weight
            scan.evidence_frames += seen

    def scan(self, frames: Iterable[np.ndarray], *, probe: int = PROBE, lattices: bool = True,
             rhythm: bool = True, stop_early: bool = True) -> Scan:
        """Read `frames` (Y planes or RGB, in order, of one size) under every hypothesis on the
        first `probe` frames (up to `PROBES` x `probe` while none has evidence), then under the
        best one only. `lattices`: also search the lattices
        a crop makes when the original geometry finds no mark. `rhythm`: after the probe, read
        only frames within one of the marked frames' residue (modulo `every`) and the two after
        it. `stop_early`: stop once the sums decode (tried after 2x, 4x, ... the probe)."""
        scan = Scan()
        it: Iterator[np.ndarray] = (luma_of(f) for f in frames)
        head = list(islice(it, probe))
        if not head:
            return scan
        scan.frames = len(head)
        by_residue = np.zeros(self.every)
        hyps = self._hypotheses(head[0].shape[0])
        self._read_into(scan, enumerate(head), hyps, by_residue)
        decoded = self._judge_sums(scan)[0] is not None
        if lattices and not decoded:
            extra = self._lattices(head)
            evidence = scan.evidence_frames
            self._read_into(scan, enumerate(head), extra)
            scan.evidence_frames = max(evidence, scan.evidence_frames - evidence)
            hyps += extra
            decoded = self._judge_sums(scan)[0] is not None
        if decoded and stop_early:
            return scan
        best = max(hyps, key=lambda h: scan.weight.get(h, 0.0))
        keep: set[int] | None = None
        if rhythm and by_residue.max() > 0:
            r = int(np.argmax(by_residue))
            keep = {(r + d) % self.every for d in (-1, 0, 1, 2)}
        checkpoint = 2 * probe
        for index, y in enumerate(it, start=len(head)):
            scan.frames = index + 1
            if scan.weight.get(best, 0.0) < MIN_EVIDENCE and index < PROBES * probe:
                # nothing (or a stray noise peak) seen under any hypothesis yet (a re-encode can wash the
                # first I-frame's mark out; the next I-frame has it): keep probing them all for up to
                # `PROBES` probes
                self._read_into(scan, [(index, y)], hyps, by_residue)
                best = max(hyps, key=lambda h: scan.weight.get(h, 0.0))
                if rhythm and by_residue.max() > 0:
                    r = int(np.argmax(by_residue))
                    keep = {(r + d) % self.every for d in (-1, 0, 1, 2)}
                continue
            if keep is not None and index % self.every not in keep:
                continue
            self._read_into(scan, [(index, y)], [best])
            if stop_early and index + 1 >= checkpoint:
                checkpoint *= 2
                if self._judge_one(scan, best)[0] is not None:
                    break
        return scan

    # -- decisions -------------------------------------------------------------------------
    def _decode(self, scan: Scan, sums: NDArray[np.float64]) -> int | None:
        scan.decodes += 1
        word = fec.viterbi_decode(sums, self.codec.n_bits)
        found = self.codec.decode(word.astype(np.float64), max_candidates=1)
        return None if found is None else found.wm_id

    def _judge_one(self, scan: Scan, hyp: Hypothesis) -> tuple[int | None, float]:
        sums, weight = scan.sums.get(hyp), scan.weight.get(hyp, 0.0)
        if sums is None or weight <= 0:
            return None, 0.0
        memo = scan.decoded.get(hyp)
        if memo is not None and memo[0] == weight:  # same sums: the same word (no new decode)
            return memo[1], weight
        if scan.decodes >= MAX_DECODES:
            return None, 0.0
        wm_id = self._decode(scan, sums)
        scan.decoded[hyp] = (weight, wm_id)
        return wm_id, weight

    def _judge_sums(self, scan: Scan) -> tuple[int | None, Hypothesis | None]:
        """The first hypothesis (by evidence) whose sums decode to a valid id."""
        for hyp in sorted(scan.weight, key=lambda h: -scan.weight[h]):
            wm_id, _ = self._judge_one(scan, hyp)
            if wm_id is not None:
                return wm_id, hyp
        return None, None

    def judge(self, scan: Scan) -> VideoWatermarkDetection:
        """The detection a scan supports: an id only when one hypothesis's Viterbi word passes
        the 32-bit check. `score`: mean |S| / std |S| of the best hypothesis's coded-bit sums
        (~1.3 for noise); `confidence`: 1 - the false-accept bound of the decodes made."""
        wm_id, hyp = self._judge_sums(scan)
        best = hyp or max(scan.weight, key=lambda h: scan.weight[h], default=None)
        score = 0.0
        if best is not None and scan.weight.get(best, 0.0) > 0:
            magnitude = np.abs(scan.sums[best])
            score = float(magnitude.mean()) / max(float(magnitude.std()), 1e-9)
        bound = self.codec.false_accept_bound(max(scan.decodes, 1))
        return VideoWatermarkDetection(wm_id, 1.0 - bound if wm_id is not None else 0.0, scan.evidence_frames,
                                       score)

    def detect(self, frames: Iterable[np.ndarray], *, probe: int = PROBE, lattices: bool = True,
               rhythm: bool = True, stop_early: bool = True) -> VideoWatermarkDetection:
        """Blind detection over frames (Y planes or RGB, in order, of one size); see `scan`."""
        return self.judge(self.scan(frames, probe=probe, lattices=lattices, rhythm=rhythm, stop_early=stop_early))

    def best_hypothesis(self, scan: Scan) -> Hypothesis | None:
        return max(scan.weight, key=lambda h: scan.weight[h], default=None)

    def accuracy_of(self, scan: Scan, wm_id: int) -> tuple[float, float]:
        """(coded-bit accuracy of the best hypothesis's sums, payload-bit accuracy after Viterbi)
        for `wm_id` (benchmarks; 0.5 each when nothing was seen)."""
        hyp = self.best_hypothesis(scan)
        if hyp is None or scan.weight[hyp] <= 0:
            return 0.5, 0.5
        bits = self.codec.encode(wm_id)
        coded = fec.conv_encode(bits)
        sums = scan.sums[hyp]
        word = fec.viterbi_decode(sums, self.codec.n_bits)
        return float(np.mean((sums > 0) == (coded == 1))), float(np.mean(word == bits))


def detect_sparse_in_file(path: str | os.PathLike[str], max_frames: int = 900) -> VideoWatermarkDetection:
    """Blind "video-sparse" detection over the first `max_frames` frames: what a verifier runs.
    Versions 3 and 2 (the tile, shifted or not: one detector) first; version 1's detector when
    it finds nothing (releases made before version 2, and releases under `SMALL_ROWS`)."""
    found = SparseMark().detect(luma_frames(path, max_frames))
    if found.wm_id is None:
        older = detect_sparse_v1_in_file(path, max_frames)
        if older.wm_id is not None:
            return older
    return found
