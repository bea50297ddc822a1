"""``tileSync``: the default image mark, built to survive the way platforms share images.

Why: the mark is the last thread back to the decision once the metadata is gone, and shared
copies are re-encoded (JPEG, WebP), resized, cropped and slightly rotated. ``dwtDctSvd`` reads
fixed pixel positions and dies with the first crop; ``rivaGan`` survives crops but carries 32
bits and costs ~1 s. ``tileSync`` (numerics in ``_tilesync``) repeats one spread-spectrum tile
over the image, finds the repetition again in a copy (the autocorrelation lattice gives scale,
rotation and aspect; a sync pattern in the tile gives the shift a crop made), folds every tile
onto one to average the host image out, and decodes the 72-bit payload (40-bit id + 32-bit
check, ``payload.MARK_PAYLOAD``) through a rate-1/3 convolutional code with soft Viterbi
decoding (``fec``).

The embedder is *informed* (``_tilesync.host_gains``): it cancels most of what the host image
itself puts on each bit. The detector's geometry search (``_search``) ranks many hypotheses — the
autocorrelation lattices (comb-scored, least-squares refined), on small copies an upright scale
sweep — by their sync correlation, and polishes the strongest by a local search on that
correlation. Neither changes the format: marks from the first embedder read the same.

The fourth revision reads the folded tile *whitened* (``_tilesync.whiten``: each frequency
divided by the power around it, at the fold's own period) before the sync correlation and the
bit scores: a textured host or a resampled copy leaves a coloured residual whose strong
frequencies drowned the mark's weak ones; the informed embedder cancels the host's share of
that whitened statistic. Same tile, code, sync and payload: ``tileSync`` version 1 still, marks
of every earlier revision read (``whiten=False`` gives the third revision, for comparison).

The fifth revision changes the detector's reading of *shrunk* hypotheses only (scale < 0.75,
folded at 64 px): their residual's local energy is measured over 3 px, not 11 (``Residual.fine``),
the 64-px fold is repeated 2 x 2 instead of upsampled bilinearly (each cell sums exactly the
pixels it became) and its whitened spectrum is weighed by the residual high-pass's response
(``_tilesync.fold(fine=True)``, ``whiten(hp_sigma=...)``) — for the hypotheses that are decoded;
the search still ranks and polishes by the plain reading (``_fine``); and the release *halved* (scale 1/2,
upright) is decoded right after the identity, before the search (``HALF``): on small textured
copies the sync correlation of the true geometry is barely above the noise, and the search
ranked (or polished) a wrong scale first. The identity path, the embedder and the format are
unchanged (``fine_half=False`` gives the fourth revision's detector; it turns ``half_first`` off too).

False accepts, by construction: each *decoded* geometry hypothesis yields at most ``list_size``
candidate words (Viterbi's most likely one, then, only when it fails the check, the next most
likely ones by list Viterbi: ``fec.list_viterbi_decode``), each valid by chance with probability
2**-32; however many hypotheses the search reads, ``detect`` decodes at most ``max_decodes`` of
them (the identity and the best by sync strength), the halved geometry (``half_first``) and,
when none reads, ``second_decodes`` more from the second look (``_second_look``: a rotation sweep
and a finer scale sweep, also ranked by sync strength), so P(an unmarked image yields an id) <=
``(max_decodes + 1 + second_decodes) * list_size * 2**-32`` (832 words: 1.9e-7 at the defaults
9, 3 and 64; 1.8e-7 before the halved geometry), under the 1e-6 the issue asks for. Ranking
hypotheses by sync strength and words by path metric uses the image only, never the payload
check, and the halved geometry is fixed in advance, so none of them can raise that bound.

Cost at 1024x1024 (bench/release.py cost lines, measured beside dwtDctSvd in the same run): the
identity path (re-encodes, colour changes, crops) decodes first; the geometry search costs a few
hundred folds on small copies and is only run when that fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np
from numpy.typing import NDArray

from gateway.provenance import _tilesync as ts
from gateway.provenance import fec
from gateway.provenance.errors import WatermarkError
from gateway.provenance.payload import MARK_PAYLOAD, PayloadCodec
from gateway.provenance.wmbase import WatermarkDetection, WatermarkFaults, check_image

__all__ = ["Reading", "Residual", "TileSyncWatermarker"]

EMBED_MIN_SIDE = ts.TILE
DETECT_MIN_SIDE = 64


SWEEP_MAX_AREA = 160_000  # copies up to this many pixels (at working resolution) get a scale sweep
POLISH_TOP = 2  # geometry hypotheses polished on the sync correlation
POLISH_MIN_Z = 4.5
MAX_BOOST_DB = 6.0  # how much louder the mark may be made where clipping took part of it away
LIST_SIZE = 64  # candidate words per decoded hypothesis (list Viterbi)
SECOND_DECODES = 3  # hypotheses of the second look decoded: (1 + 9 + 3) * 64 * 2**-32 = 1.9e-7 per image
HALF = ts.Lattice((ts.TILE / 2, 0.0), (0.0, ts.TILE / 2), 0.0)  # the release halved, upright
SECOND_MAX_DEG = 4.5  # the second look's rotation sweep covers +-this many degrees
FINE_WINDOW = 3  # fifth revision: the local-energy window of the residual that shrunk hypotheses fold


def _perturb(lat: ts.Lattice, scale: float, radians: float) -> ts.Lattice:
    c, s = np.cos(radians) * scale, np.sin(radians) * scale

    def turn(v: tuple[float, float]) -> tuple[float, float]:
        return float(c * v[0] - s * v[1]), float(s * v[0] + c * v[1])

    return ts.Lattice(turn(lat.b1), turn(lat.b2), lat.strength)


@dataclass
class Residual:
    """A copy's residual (``_tilesync.residual`` of its luma at working resolution) and, computed
    on the first shrunk hypothesis decoded, the finer one the fifth revision folds for those: its
    local energy measured over ``FINE_WINDOW`` px, about the 11 px of the full-size residual
    at the copy's half scale (see ``_tilesync.residual``)."""

    y: NDArray[np.float32]
    full: NDArray[np.float32]

    @cached_property
    def fine(self) -> NDArray[np.float32]:
        return ts.residual(self.y, window=FINE_WINDOW)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.full.shape

    @property
    def size(self) -> int:
        return int(self.full.size)


@dataclass(frozen=True)
class Reading:
    """One geometry hypothesis read out: the lattice, the sync strength and the bit scores."""

    lattice: ts.Lattice
    sync_z: float
    scores: NDArray[np.float64]
    origin: tuple[int, int] = (0, 0)  # the copy's origin in the tile grid, modulo TILE


class TileSyncWatermarker:
    """Tiled spread-spectrum mark with self-synchronisation (see the module docstring).

    ``psnr_db`` is the target quality of the marked image (the mark's amplitude follows from it,
    shaped by a perceptual mask); ``strength`` multiplies the amplitude (policies' ``strength``;
    1.0 = ``psnr_db``). ``max_lattices`` geometry candidates (up to 4x more on copies under 0.25 MP,
    which are cheap to fold) are ranked by their sync strength and
    at most ``max_decodes`` of them decoded (and ``second_decodes`` of the second look's), each to
    at most ``list_size`` candidate words (the false-accept budget). ``whiten=False``: the third
    revision (unwhitened fold, embedder and detector), for comparison.
    """

    method = "tileSync"
    version = "1"

    def __init__(self, *, psnr_db: float = 40.5, strength: float = 1.0, min_psnr_db: float = 40.0,
                 max_lattices: int = 8, max_decodes: int = 9, list_size: int = LIST_SIZE,
                 second_decodes: int = SECOND_DECODES, codec: PayloadCodec = MARK_PAYLOAD,
                 informed: bool = True, whiten: bool = True, fine_half: bool = True,
                 half_first: bool = True) -> None:
        if strength <= 0:
            raise ValueError("strength must be positive")
        self.psnr_db = float(psnr_db) - 20 * math.log10(strength)
        self.min_psnr_db = min(float(min_psnr_db), self.psnr_db)
        self.max_lattices = max_lattices
        self.max_decodes = max(1, max_decodes)
        self.list_size = max(1, list_size)
        self.second_decodes = max(0, min(second_decodes, SECOND_DECODES))
        self.codec = codec
        self.informed = informed  # False: the first embedder (plain spread spectrum), for comparison
        self.whiten = whiten  # False: the third revision's detector (unwhitened folded tile), for comparison
        # False: the fourth revision's detector (a shrunk copy's 64-px fold upsampled bilinearly, no high-pass weight)
        self.fine_half = fine_half and whiten
        # False: no halved-copy fast path (fourth revision and earlier: also off with fine_half or whiten off)
        self.half_first = half_first and self.fine_half
        self.faults = WatermarkFaults()
        self._layout = ts.layout(fec.coded_length(codec.n_bits))

    # -- embedding ----------------------------------------------------------------------------
    def embed(self, rgb: NDArray[np.uint8], wm_id: int) -> NDArray[np.uint8]:
        self.faults.check("embed")
        image = check_image(rgb, self.method, min_area=EMBED_MIN_SIDE**2, min_side=EMBED_MIN_SIDE)
        coded = fec.conv_encode(self.codec.encode(wm_id))
        # ``target`` sets the mark's amplitude; the PSNR that counts is the one of the marked image
        # (rounding raises the change a little, clipping at black and white lowers it): below the
        # floor, the amplitude goes down; well above the target (saturated graphics, where half of
        # the mark is clipped away), it goes up, by at most MAX_BOOST_DB, so the image still ends
        # at the target PSNR
        target, best, boosts = self.psnr_db, None, 0
        for _ in range(8):
            marked, mse = ts.embed(image, coded, target, informed=self.informed, whitened=self.whiten)
            psnr = 10 * math.log10(255.0**2 / max(mse, 1e-12))
            if psnr < self.min_psnr_db:
                if best is not None:
                    break
                target += self.min_psnr_db - psnr + 0.1
                continue
            best = marked
            if psnr <= self.psnr_db + 0.3 or boosts >= 2 or target <= self.psnr_db - MAX_BOOST_DB:
                break
            target = max(self.psnr_db - MAX_BOOST_DB, target - (psnr - self.psnr_db))
            boosts += 1
        if best is None:
            raise WatermarkError(f"{self.method}: cannot keep PSNR >= {self.min_psnr_db} dB on this image")
        return best

    # -- detection ----------------------------------------------------------------------------
    def residual(self, rgb: NDArray[np.uint8]) -> Residual:
        image = check_image(rgb, self.method, min_area=DETECT_MIN_SIDE**2, min_side=DETECT_MIN_SIDE)
        y = ts.luma(image)
        height, width = y.shape
        wh, ww = ts.work_shape(height, width)
        if (wh, ww) != (height, width):
            y = np.asarray(cv2.resize(y, (ww, wh), interpolation=cv2.INTER_AREA), dtype=np.float32)
        return Residual(y, ts.residual(y))

    def read(self, residual: Residual, lattice: ts.Lattice, fine: bool = False) -> Reading:
        """One hypothesis read out. ``fine`` (for the hypotheses that are decoded; the search ranks
        by the plain reading): a shrunk hypothesis is read from the fine residual and fold."""
        if fine and self.fine_half and lattice.scale < ts.SHRUNK_BELOW:
            folded = ts.fold(residual.fine, lattice, self.whiten, fine=True)
        else:
            folded = ts.fold(residual.full, lattice, self.whiten)
        aligned, sync_z, origin = ts.align(folded, self._layout)
        return Reading(lattice, sync_z, ts.chip_scores(aligned, self._layout), origin)

    def _fine(self, residual: Residual, reading: Reading) -> Reading:
        """A hypothesis about to be decoded, read finely where that differs (shrunk hypotheses).
        Why not rank by the fine reading too: its sync peak on unmarked content stands ~1 higher
        than the plain one's, so shrunk hypotheses crowded the turned ones out of a 2-degree copy's
        second look (two small renders lost in the sharing table, seed 7)."""
        if self.fine_half and reading.lattice.scale < ts.SHRUNK_BELOW:
            return self.read(residual, reading.lattice, fine=True)
        return reading

    def _lattices(self, residual: Residual) -> list[ts.Lattice]:
        """Geometry candidates; small copies (cheap to fold, noisy autocorrelation) get more."""
        extra = 1 if residual.size <= SWEEP_MAX_AREA else int(np.clip(2.5e5 / residual.size, 1, 4))
        return ts.find_lattices(residual.full, n=self.max_lattices * extra, peaks=24 * extra, search=True)

    def _search(self, residual: Residual) -> list[Reading]:
        """Geometry hypotheses read out, by sync strength: the lattices found in the copy's
        autocorrelation, on small copies an upright scale sweep, and the strongest few polished
        by a local search on the sync correlation itself (see ``_polish``)."""
        found = [self.read(residual, lat) for lat in self._lattices(residual)]
        if residual.size <= SWEEP_MAX_AREA:
            found += self._sweep(residual)
        found.sort(key=lambda reading: -reading.sync_z)
        # polishing costs ~30 folds a hypothesis: only for those whose sync already stands out
        # of the noise (unmarked images: sync_z ~3.5-5.3; marks slightly off: 4.5 and more)
        polished = [self._polish(residual, reading) if reading.sync_z >= POLISH_MIN_Z else reading
                    for reading in found[:POLISH_TOP]]
        return sorted([*polished, *found[POLISH_TOP:]], key=lambda reading: -reading.sync_z)

    def _sweep(self, residual: Residual) -> list[Reading]:
        """Upright lattices at every scale from 0.3x to 1.1x, read by their sync correlation: on a
        small copy the autocorrelation has too few tiles to show the repetition, but folding is cheap."""
        side = max(residual.shape)
        step = 1.0 + 4.0 / side  # the far edge moves ~2 px per step; ``_polish`` refines
        scales = np.exp(np.arange(np.log(0.3), np.log(1.1), np.log(step)))
        readings = [self.read(residual, ts.Lattice((ts.TILE * s, 0.0), (0.0, ts.TILE * s), 0.0)) for s in scales]
        readings.sort(key=lambda reading: -reading.sync_z)
        return readings[:2]

    def _second_look(self, residual: Residual) -> list[Reading]:
        """Geometry hypotheses for a copy the first search could not read, driven by the sync
        correlation alone: a rotation sweep at the copy's own scale (a photo straightened by a
        few degrees: on noise-like hosts and small renders the autocorrelation's lattice peaks
        drown in the host's, and the first search then ranks a wrong lattice first), and on
        small copies a finer scale sweep (a halved render of two tiles moves its far edge by a
        cell per 3 % of scale). The best ``SECOND_DECODES`` by sync strength, polished."""
        side = max(residual.shape)
        unit = 4.0 / side  # the far edge moves ~2 px per step
        angles = np.arange(-np.radians(SECOND_MAX_DEG), np.radians(SECOND_MAX_DEG) + 1e-9, unit)
        found = [self.read(residual, _perturb(ts.IDENTITY, 1.0, float(a))) for a in angles if abs(a) > unit / 2]
        if residual.size <= SWEEP_MAX_AREA:
            step = 1.0 + 2.0 / side
            found += [self.read(residual, ts.Lattice((ts.TILE * s, 0.0), (0.0, ts.TILE * s), 0.0))
                      for s in np.exp(np.arange(np.log(0.3), np.log(1.1), np.log(step)))]
        found.sort(key=lambda reading: -reading.sync_z)
        polished = [self._polish(residual, reading) for reading in found[:SECOND_DECODES]]
        return sorted(polished, key=lambda reading: -reading.sync_z)

    def _polish(self, residual: Residual, reading: Reading) -> Reading:
        """Hill-climb scale and rotation on the sync correlation, in steps that move the copy's
        far edge by about one pixel, then half a pixel: the autocorrelation places the lattice to
        a fraction of a pixel per period, and a 0.2 % scale or 0.1 degree error already moves the
        4-px cells by a cell across a large copy."""
        side = max(residual.shape)
        best = reading
        for unit in (2.0 / side, 1.0 / side):
            for _ in range(3):
                base = best
                for ds, da in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    candidate = self.read(residual, _perturb(base.lattice, 1.0 + ds * unit, da * unit))
                    if candidate.sync_z > best.sync_z:
                        best = candidate
                if best is base:
                    break
        return best

    def readings(self, rgb: NDArray[np.uint8]) -> list[Reading]:
        """Every geometry hypothesis (the unchanged geometry first, then the lattices found in
        the copy, by sync strength); the bench reads raw bit accuracy from these."""
        residual = self.residual(rgb)
        first = [self.read(residual, ts.IDENTITY)]
        if self.half_first:
            first.append(self.read(residual, HALF, fine=True))
        rest = [*self._search(residual), *self._second_look(residual)]
        return [*first, *(self._fine(residual, reading) for reading in rest)]

    def _decode(self, reading: Reading) -> tuple[int | None, int]:
        """The id in one hypothesis (or None) and how many candidate words were checked: Viterbi's
        most likely word, then, when it fails the check, the rest of the ``list_size`` most likely
        words (list Viterbi) in order of likelihood, up to the first valid one."""
        word = fec.viterbi_decode(reading.scores, self.codec.n_bits)
        found = self.codec.decode(word.astype(np.float64), max_candidates=1)
        if found is not None or self.list_size <= 1:
            return (None if found is None else found.wm_id), 1
        words = fec.list_viterbi_decode(reading.scores, self.codec.n_bits, self.list_size)
        for checked, word in enumerate(words[1:], start=2):
            found = self.codec.decode(word.astype(np.float64), max_candidates=1)
            if found is not None:
                return found.wm_id, checked
        return None, max(1, len(words))

    def detect(self, rgb: NDArray[np.uint8]) -> WatermarkDetection:
        self.faults.check("detect")
        residual = self.residual(rgb)
        # fast path: the copy kept the original geometry (re-encodes, colour changes, crops)
        reading = self.read(residual, ts.IDENTITY)
        candidates: list[Reading] = [reading]
        wm_id, checked = self._decode(reading)
        if wm_id is None and self.half_first:
            # second fast path: the copy is the release halved (the commonest shrink; within half a
            # pixel at every edge whatever the rounding of an odd side): decoded before the search,
            # whose sync correlation is too weak on small textured copies to rank it first
            reading = self.read(residual, HALF, fine=True)
            candidates.append(reading)
            wm_id, words = self._decode(reading)
            checked += words
        if wm_id is None:
            candidates = self._search(residual)
            for ranked in candidates[: self.max_decodes - 1]:
                reading = self._fine(residual, ranked)
                wm_id, words = self._decode(reading)
                checked += words
                if wm_id is not None:
                    break
        if wm_id is None and self.second_decodes:
            second = self._second_look(residual)
            candidates += second
            for ranked in second[: self.second_decodes]:
                reading = self._fine(residual, ranked)
                wm_id, words = self._decode(reading)
                checked += words
                if wm_id is not None:
                    break
        bound = self.codec.false_accept_bound(checked)
        if wm_id is None:
            best = max(candidates, key=lambda r: r.sync_z, default=reading)
            return WatermarkDetection(None, None, self.method, bound, sync_z=best.sync_z)
        sent = fec.conv_encode(self.codec.encode(wm_id))
        accuracy = float(((reading.scores > 0).astype(np.uint8) == sent).mean())
        lat = reading.lattice
        return WatermarkDetection(wm_id, accuracy, self.method, bound, scale=lat.scale,
                                  rotation_deg=lat.rotation_deg, confidence=1.0 - bound, sync_z=reading.sync_z,
                                  placement=(lat.b1, lat.b2, reading.origin))

    def placements(self, copy: NDArray[np.uint8], detection: WatermarkDetection,
                   original_size: tuple[int, int]) -> list[NDArray[np.uint8]]:
        """The copy put back where it can sit in the marked image (``original_size`` = (width,
        height) of the release): undoes scale, rotation and crop, replicating edges into what the
        crop removed. Used to compare the copy with the perceptual hash recorded at release."""
        if detection.placement is None:
            return []
        b1, b2, origin = detection.placement
        ow, oh = original_size
        wh, ww = ts.work_shape(oh, ow)  # canonical units: the marked image at working resolution
        h, w = copy.shape[:2]
        ch, cw = ts.work_shape(h, w)  # the lattice was measured on the copy at its working resolution
        small = copy if (ch, cw) == (h, w) else np.asarray(
            cv2.resize(copy, (cw, ch), interpolation=cv2.INTER_AREA), dtype=np.uint8)
        out = []
        for affine in ts.placements((ch, cw), ts.Lattice(b1, b2, 0.0), origin, (wh, ww))[:9]:
            placed = cv2.warpAffine(small, affine.astype(np.float32), (ww, wh), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
            out.append(np.asarray(placed, dtype=np.uint8))
        return out

    def raw_bit_accuracy(self, rgb: NDArray[np.uint8], wm_id: int) -> float:
        """Best fraction of carried (coded) bits read correctly over the geometry hypotheses."""
        sent = fec.conv_encode(self.codec.encode(wm_id))
        try:
            readings = self.readings(rgb)
        except WatermarkError:
            return 0.5
        return max(float(((r.scores > 0).astype(np.uint8) == sent).mean()) for r in readings)
