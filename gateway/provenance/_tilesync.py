"""The numerics of the ``tileSync`` mark: a periodic spread-spectrum tile that finds itself again.

Why: shared copies of a render are re-encoded, resized, cropped and slightly rotated. A mark
read at fixed pixel positions (dwtDctSvd) dies with the first crop. Here the mark is one
``TILE`` x ``TILE`` pattern repeated over the whole image, so

- the repetition itself is the synchronisation template: the autocorrelation of the image's
  high-pass residual has peaks on the lattice of the repetition, whose two basis vectors give
  the scale, the rotation (and any aspect change) of the copy, whatever its size;
- a crop only shifts the repetition: after the residual is folded onto one tile (every pixel
  added to its position modulo the period), a fixed pseudo-random *sync* part of the tile gives
  the shift by circular cross-correlation;
- every payload bit is spread over ~10 cells of the tile, repeated in every tile of the image,
  so the folded tile averages the host image out (spread spectrum) and each bit comes out with a
  soft value for the payload decoder (``gateway.provenance.payload``).

The tile carries ``N_CELLS`` cells of ``CELL`` x ``CELL`` pixels: ``N_SYNC`` sync cells and the
others shared round-robin among the payload bits, each with a pseudo-random +-1 chip (whitening).
The pattern is added to luma (R, G and B alike) with a perceptual mask (more in textured areas,
less in flat ones) scaled to a target PSNR, each bit's cells scaled to cancel most of what the
host image itself puts on that bit (``host_gains``: informed embedding; the detector is
unchanged). Images larger than ``WORK_SIDE`` are marked and read at a working resolution (the
mark is upsampled onto the full image), so the cost stays flat. The detector reads the folded
tile whitened (``whiten``: each frequency weighed by how much of the mark it can carry against
the host's coloured residual).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache

import cv2
import numpy as np
import scipy.fft
import scipy.ndimage
from numpy.typing import NDArray

TILE = 128
CELL = 4
N_CELLS = (TILE // CELL) ** 2
N_SYNC = 256
WORK_SIDE = 1024
ISS_CANCEL = 0.7  # informed embedding: the share of the host's interference cancelled per bit
ISS_MIN_GAIN, ISS_MAX_GAIN = 0.4, 2.5
SHRUNK_BELOW = 0.75  # hypotheses of a smaller scale are folded at TILE // 2 (``fold``)
MIN_FOLD_DET, MAX_FOLD_DET = 0.04, 25.0  # area scale a fold accepts (copies 0.2x-5x the tile period)
F32 = NDArray[np.float32]


@dataclass(frozen=True)
class Layout:
    """Where the sync and the payload bits sit in the tile (cells), with their chips."""

    n_bits: int
    sync: F32  # (TILE, TILE): chip on sync cells, 0 elsewhere
    bit_of_cell: NDArray[np.int64]  # (N_CELLS,): bit index, -1 for sync cells
    chip: NDArray[np.float32]  # (N_CELLS,): +-1
    sync_spectrum: NDArray[np.complex128]  # conj(rfft2(sync)): ``align`` correlates every fold with it


@cache
def layout(n_bits: int, domain: str = "consentgate/tilesync/v1") -> Layout:
    seed = int.from_bytes(hashlib.sha256(domain.encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    order = rng.permutation(N_CELLS)
    bit_of_cell = np.full(N_CELLS, -1, dtype=np.int64)
    payload_cells = order[N_SYNC:]
    bit_of_cell[payload_cells] = np.arange(payload_cells.shape[0]) % n_bits
    chip = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), N_CELLS)
    sync_cells = np.where(bit_of_cell < 0, chip, 0.0).astype(np.float32)
    sync = _cells_to_tile(sync_cells)
    return Layout(n_bits, sync, bit_of_cell, chip, np.conj(scipy.fft.rfft2(sync)))


def _cells_to_tile(cells: NDArray[np.float32]) -> F32:
    side = TILE // CELL
    grid = cells.reshape(side, side)
    tile: F32 = np.kron(grid, np.ones((CELL, CELL), dtype=np.float32)).astype(np.float32)
    return tile


def tile_for(bits: NDArray[np.uint8], lay: Layout, gains: NDArray[np.float64] | None = None) -> F32:
    """The +-1 tile that carries ``bits`` (sync cells included); ``gains`` (one per carried bit)
    scales each bit's cells (informed embedding, see ``host_gains``)."""
    signs = np.where(lay.bit_of_cell >= 0, 2.0 * bits[np.maximum(lay.bit_of_cell, 0)] - 1.0, 1.0)
    if gains is not None:
        signs = signs * np.where(lay.bit_of_cell >= 0, gains[np.maximum(lay.bit_of_cell, 0)], 1.0)
    return _cells_to_tile((lay.chip * signs).astype(np.float32))


def luma(rgb: NDArray[np.uint8]) -> F32:
    """BT.601 luma (OpenCV's grey conversion, rounded to 8 bits: quantisation noise is ~0.3
    levels, far under the mark's amplitude)."""
    out: F32 = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), dtype=np.float32)
    return out


def work_shape(height: int, width: int) -> tuple[int, int]:
    factor = min(1.0, WORK_SIDE / max(height, width))
    return max(1, round(height * factor)), max(1, round(width * factor))


def perceptual_mask(y: F32) -> F32:
    """Relative local activity, mean ~1: the mark hides in texture, stays faint on flat areas."""
    detail = cv2.absdiff(y, cv2.blur(y, (3, 3)))
    activity = np.asarray(cv2.blur(detail, (15, 15)), dtype=np.float32)
    scale = np.float32(1.0 / (float(activity.mean()) + 1.0))
    activity *= scale
    activity += scale
    np.clip(activity, 0.35, 2.5, out=activity)
    return activity


def _bit_sums(y: F32, lay: Layout, whitened: bool = False) -> NDArray[np.float64]:
    """Per carried bit, the detector's chip-weighted sum over the bit's cells (identity geometry)."""
    side = TILE // CELL
    folded = fold(residual(y), IDENTITY, whitened)
    cells = folded.reshape(side, CELL, side, CELL).sum(axis=(1, 3)).ravel().astype(np.float64)
    payload = lay.bit_of_cell >= 0
    sums = np.bincount(lay.bit_of_cell[payload], weights=cells[payload] * lay.chip[payload], minlength=lay.n_bits)
    return np.asarray(sums, dtype=np.float64)


def host_gains(y: F32, pattern_of: Callable[[NDArray[np.float64] | None], F32], bits: NDArray[np.uint8],
               lay: Layout, cancel: float = ISS_CANCEL, whitened: bool = True) -> NDArray[np.float64]:
    """Informed embedding (improved spread spectrum): per carried bit, the gain that cancels the
    host image's own contribution to that bit's detector statistic.

    A plain spread-spectrum bit reads ``g * sign + h``, where ``h`` is what the host image alone
    puts on the bit's chips; on small or textured renders ``h`` is as large as the mark and flips
    bits before the internet has done anything. The embedder knows the host, so it measures ``h``
    and ``g`` (the detector's response to the plain mark) and scales each bit by
    ``1 - cancel * sign * h / g`` (clipped): bits the host pushes the wrong way get more energy,
    bits it already helps get less. The detector is unchanged (marks made without it still read).
    ``whitened``: ``h`` and ``g`` are measured on the whitened fold the fourth revision's detector
    reads (``whiten``); False gives the third revision's embedder."""
    sign = 2.0 * bits.astype(np.float64) - 1.0
    host = _bit_sums(y, lay, whitened)
    plain = _bit_sums(np.clip(y + pattern_of(None), 0, 255).astype(np.float32), lay, whitened)
    g = (plain - host) * sign
    gm = float(np.median(g))
    if not gm > 0:
        return np.ones_like(sign)
    out: NDArray[np.float64] = np.clip(1.0 - cancel * sign * host / gm, ISS_MIN_GAIN, ISS_MAX_GAIN)
    return out


def embed(rgb: NDArray[np.uint8], bits: NDArray[np.uint8], psnr_db: float,
          informed: bool = True, whitened: bool = True) -> tuple[NDArray[np.uint8], float]:
    """Add the tiled pattern for ``bits`` to the luma of ``rgb`` at ``psnr_db`` (before rounding and
    clipping); returns the marked image and its actual mean squared change (R, G and B)."""
    height, width = rgb.shape[:2]
    wh, ww = work_shape(height, width)
    small = rgb if (wh, ww) == (height, width) else np.asarray(
        cv2.resize(rgb, (ww, wh), interpolation=cv2.INTER_AREA), dtype=np.uint8)
    lay = layout(bits.shape[0])
    reps = (-(-wh // TILE), -(-ww // TILE))
    y_small = luma(small)
    mask = perceptual_mask(y_small)
    target_mse = 255.0**2 / 10 ** (psnr_db / 10) - 1 / 12  # rounding adds ~1/12

    def pattern_of(gains: NDArray[np.float64] | None) -> F32:
        p: F32 = np.tile(tile_for(bits, lay, gains), reps)[:wh, :ww] * mask
        p *= np.float32(np.sqrt(max(target_mse, 0.01) / float(np.mean(np.square(p, dtype=np.float32)))))
        return p

    gains = host_gains(y_small, pattern_of, bits, lay, whitened=whitened) if informed else None
    pattern = pattern_of(gains)
    if (wh, ww) != (height, width):
        pattern = np.asarray(cv2.resize(pattern, (width, height), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
    alpha = np.float32(np.sqrt(max(target_mse, 0.01) / float(np.mean(np.square(pattern, dtype=np.float32)))))
    delta = np.rint(alpha * pattern)  # rint(pixel + d) == pixel + rint(d)
    # saturating uint8 adds: the same change on R, G and B (luma only)
    up = np.clip(delta, 0, 255).astype(np.uint8)
    down = np.clip(-delta, 0, 255).astype(np.uint8)
    marked = cv2.subtract(cv2.add(rgb, cv2.merge([up, up, up])), cv2.merge([down, down, down]))
    mse = float(cv2.norm(marked, rgb, cv2.NORM_L2SQR)) / rgb.size
    return np.asarray(marked, dtype=np.uint8), mse


def residual(y: F32, window: int = 11) -> F32:
    """High-pass residual, normalised by its local energy (host image out, mark in).

    ``window`` 3 (the fifth revision's detector, for shrunk hypotheses only: ``tilesync.Residual``):
    on 150 halved small, grass and gravel copies read at their true geometry, 148 words decoded
    with a 3-px window against 142 with 11 px, 146 with 5 px and 143 with 7 px (a halved copy
    packs twice the texture into each window; the mark's 4-px cells are 2 px there)."""
    # sigma 1.0 / window 11 measured best over JPEG q50, WebP q60 and 0.5x copies (bench/release.py)
    r = cv2.subtract(y, cv2.GaussianBlur(y, (0, 0), 1.0))
    energy = np.asarray(cv2.sqrt(np.maximum(cv2.blur(cv2.multiply(r, r), (window, window)), 0)), dtype=np.float32)
    energy += 0.5
    out = np.asarray(cv2.divide(r, energy), dtype=np.float32)
    np.clip(out, -3.0, 3.0, out=out)
    return out


@dataclass(frozen=True)
class Lattice:
    """The repetition found in a copy: basis vectors (x, y) of one tile period, in pixels."""

    b1: tuple[float, float]
    b2: tuple[float, float]
    strength: float  # autocorrelation at the peak, relative to lag 0

    @property
    def scale(self) -> float:
        return float((np.hypot(*self.b1) + np.hypot(*self.b2)) / (2 * TILE))

    @property
    def rotation_deg(self) -> float:
        return float(np.degrees(np.arctan2(self.b1[1], self.b1[0])))


IDENTITY = Lattice((float(TILE), 0.0), (0.0, float(TILE)), 0.0)


def _refine(acf: F32, y: int, x: int) -> tuple[float, float]:
    """Sub-pixel peak position by a parabola through the neighbours (circular)."""
    h, w = acf.shape

    def off(m: float, c: float, p: float) -> float:
        d = m - 2 * c + p
        return 0.0 if d >= 0 else float(np.clip(0.5 * (m - p) / d, -0.5, 0.5))

    c = float(acf[y % h, x % w])
    dy = off(float(acf[(y - 1) % h, x % w]), c, float(acf[(y + 1) % h, x % w]))
    dx = off(float(acf[y % h, (x - 1) % w]), c, float(acf[y % h, (x + 1) % w]))
    return y + dy, x + dx


def find_lattices(r: F32, min_period: float = 0.3 * TILE, max_period: float = 2.2 * TILE,
                  n: int = 2, peaks: int = 24, search: bool = False) -> list[Lattice]:
    """Up to ``n`` candidate lattices from the autocorrelation of the residual ``r``; with
    ``search`` (the image mark's detector), the picks are least-squares refined and the comb and
    near-upright candidates are added (up to ``2.5 n`` in all). Without it (the video mark), the
    first revision's ``n`` peaks, unchanged."""
    h0, w0 = r.shape
    # zero-pad so that lags up to max_period do not wrap around (linear, not circular, ACF)
    pad = int(min(max_period, 0.8 * min(h0, w0))) if min(h0, w0) < 3 * max_period else 0
    h, w = scipy.fft.next_fast_len(h0 + pad, real=True), scipy.fft.next_fast_len(w0 + pad, real=True)
    spectrum = scipy.fft.rfft2(r, s=(h, w), workers=-1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    # spectral whitening: the repetition makes narrow lines in the spectrum, the host a smooth
    # background; dividing by the local mean keeps the lines and flattens the host
    power /= cv2.blur(power, (9, 9)) + np.float32(1e-6)
    acf = scipy.fft.irfft2(power, s=(h, w), workers=-1).astype(np.float32)
    acf /= max(float(acf[0, 0]), 1e-9)
    shifted = np.fft.fftshift(acf)  # lag 0 at (h // 2, w // 2): wrap-free neighbourhoods near it
    ys = (np.arange(h) - h // 2)[:, None]
    xs = (np.arange(w) - w // 2)[None, :]
    radius = np.hypot(ys, xs)
    # a lag (dy, dx) is seen on n = (h0 - |dy|) * (w0 - |dx|) pixel pairs: the sum grows like n,
    # its noise like sqrt(n); dividing by sqrt(n) ranks peaks by significance
    overlap = np.clip((h0 - np.abs(ys)) * (w0 - np.abs(xs)), 0.05 * h0 * w0, None) / (h0 * w0)
    shifted = (shifted / np.sqrt(overlap)).astype(np.float32)
    # half plane x > 0 (or x == 0, y > 0): each lag and its negative are the same peak
    ring = (radius >= min_period) & (radius <= min(max_period, 0.7 * min(h0, w0))) & (
        (xs > 0) | ((xs == 0) & (ys > 0)))
    local_max = shifted >= cv2.dilate(shifted, np.ones((5, 5), np.uint8))
    candidates = np.flatnonzero((ring & local_max).ravel())
    if candidates.size == 0:
        return []
    top = candidates[np.argsort(shifted.ravel()[candidates])[::-1][:peaks]]
    out: list[Lattice] = []
    for flat in top:
        py, px = divmod(int(flat), w)
        y0, x0 = _refine(acf, py - h // 2, px - w // 2)
        # the partner vector, 90 degrees on
        ey, ex = x0, -y0
        best = None
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                qy, qx = round(ey) + dy, round(ex) + dx
                v = float(acf[qy % h, qx % w])
                if best is None or v > best[0]:
                    best = (v, qy, qx)
        assert best is not None
        y1, x1 = _refine(acf, best[1], best[2])
        v1, v2 = (x0, y0), (x1, y1)
        # b1 is the vector closest to +x, b2 the one closest to +y (small rotations)
        vecs = [v1, v2, (-v1[0], -v1[1]), (-v2[0], -v2[1])]
        b1 = max(vecs, key=lambda v: v[0] / np.hypot(*v))
        b2 = max(vecs, key=lambda v: v[1] / np.hypot(*v))
        # a true lattice has peaks at b1 + b2 and b1 - b2 too; host structure rarely does
        score = sum(_peak_near(shifted, h, w, vy, vx) for vy, vx in (
            (b1[1], b1[0]), (b2[1], b2[0]), (b1[1] + b2[1], b1[0] + b2[0]), (b1[1] - b2[1], b1[0] - b2[0])))
        lat = Lattice((float(b1[0]), float(b1[1])), (float(b2[0]), float(b2[1])), score / 4)
        if all(abs(lat.scale - o.scale) > 0.01 or abs(lat.rotation_deg - o.rotation_deg) > 0.5 for o in out):
            out.append(lat)
    comb = _comb_lattices(shifted, h, w, h0, w0, min_period, max_period, n) if search else []
    if not out:
        return comb
    # by consistency; but a sub-lattice (every k-th repetition) is as consistent as the lattice
    # itself, so the shortest consistent periods are put forward too
    by_score = sorted(out, key=lambda lat: -lat.strength)
    top_score = by_score[0].strength
    shortest = sorted((lat for lat in out if lat.strength >= 0.5 * top_score), key=lambda lat: lat.scale)
    picked: list[Lattice] = []
    for lat in [*shortest[:n // 3], *by_score]:
        if lat not in picked:
            picked.append(lat)
    if not search:
        return picked[:n]
    picked = [_refine_lattice(shifted, h, w, h0, w0, lat) for lat in picked[:n]]
    return [*picked, *(lat for lat in comb if all(
        abs(lat.scale - o.scale) > 0.005 or abs(lat.rotation_deg - o.rotation_deg) > 0.2 for o in picked))]


# lattice points (k, j) -> k * b1 + j * b2 that the comb search reads (one of each +- pair)
_COMB = ((1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2), (2, 1), (1, 2), (2, -1), (1, -2), (2, 2), (2, -2))


def _comb_lattices(shifted: F32, h: int, w: int, h0: int, w0: int, min_period: float, max_period: float,
                   n: int) -> list[Lattice]:
    """Lattices scored on a whole comb of autocorrelation peaks, not one.

    Every integer lag ``b1`` (at most 45 degrees off +x) is a candidate basis vector with ``b2``
    its 90-degree turn; its score is the sum of the autocorrelation (dilated by one pixel, for the
    rounding of ``b1``) at the lattice points of ``_COMB`` that fall inside the copy, over the
    square root of their number (the noise grows like that). A host structure rarely puts peaks on
    a dozen points of a square lattice; the mark's repetition does, even when one peak of it is
    lost in the host's own autocorrelation (white and 1/f noise, resampled copies)."""
    cy, cx = h // 2, w // 2
    rlim = min(0.75 * min(h0, w0), float(min(cy, cx) - 2))
    rmax = min(max_period, rlim)
    r = int(np.ceil(rmax))
    ys, xs = np.mgrid[-r:r + 1, 0:r + 1]
    radius = np.hypot(ys, xs)
    keep = (radius >= min_period) & (radius <= rmax) & (np.abs(ys) <= xs) & ~((xs == 0) & (ys <= 0))
    by, bx = ys[keep].astype(np.int64), xs[keep].astype(np.int64)
    if by.size == 0:
        return []
    dil = cv2.dilate(shifted, np.ones((3, 3), np.uint8))
    total = np.zeros(by.shape, np.float64)
    count = np.zeros(by.shape, np.float64)
    for k, j in _COMB:
        py, px = k * by + j * bx, k * bx - j * by  # k * (bx, by) + j * (-by, bx)
        ok = np.hypot(py, px) <= rlim
        vals = dil[np.clip(cy + py, 0, h - 1), np.clip(cx + px, 0, w - 1)]
        total += np.where(ok, vals, 0.0)
        count += ok
    score = total / np.sqrt(np.maximum(count, 1.0))
    out: list[Lattice] = []
    taken: list[tuple[float, float]] = []
    ubx, uby, uscore = _upright_comb(shifted, h, w, rlim, min_period, rmax)
    # the best anywhere, then the best near upright (see ``_upright_comb``)
    for xs_, ys_, sc, quota in ((bx, by, score, n), (ubx, uby, uscore, max(2, n // 2))):
        added = 0
        for i in np.argsort(sc)[::-1][: 40 * n]:
            x, y = float(xs_[i]), float(ys_[i])
            if any(abs(y - ty) <= 2.5 and abs(x - tx) <= 2.5 for ty, tx in taken):
                continue
            taken.append((y, x))
            lat = Lattice((x, y), (-y, x), float(sc[i]))
            out.append(_refine_lattice(shifted, h, w, h0, w0, lat))
            added += 1
            if added >= quota:
                break
    return out


UPRIGHT_DEG = 5.0  # the near-upright search covers rotations up to this


def _upright_comb(shifted: F32, h: int, w: int, rlim: float, min_period: float,
                  rmax: float) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Near-upright lattices (|rotation| <= ``UPRIGHT_DEG``) scored on *every* lattice point inside
    the copy, not a dozen: shared copies are resized freely but rarely turned more than a few
    degrees, and on noise-like hosts each autocorrelation peak of the mark is only 1-3 standard
    deviations high; summed over the 20-60 points of the whole comb it stands out, and the
    smaller search region has a lower noise floor. Returns candidate b1 (x, y) and scores."""
    cy, cx = h // 2, w // 2
    smooth = cv2.GaussianBlur(shifted, (0, 0), 0.7)
    periods = np.arange(min_period, rmax, 0.5)
    angles = np.radians(np.arange(-UPRIGHT_DEG, UPRIGHT_DEG + 1e-9, 0.25))
    pp, aa = np.meshgrid(periods, angles, indexing="ij")
    b1x, b1y = (pp * np.cos(aa)).ravel(), (pp * np.sin(aa)).ravel()
    kmax = int(rlim // min_period) + 1
    total = np.zeros(b1x.shape, np.float64)
    count = np.zeros(b1x.shape, np.float64)
    for k in range(0, kmax + 1):
        for j in range(-kmax, kmax + 1):
            if (k == 0 and j <= 0) or k * k + j * j > kmax * kmax:
                continue
            px, py = k * b1x - j * b1y, k * b1y + j * b1x
            ok = px * px + py * py <= rlim * rlim
            if not ok.any():
                continue
            iy = np.clip(np.rint(cy + py).astype(np.int64), 0, h - 1)
            ix = np.clip(np.rint(cx + px).astype(np.int64), 0, w - 1)
            total += np.where(ok, smooth[iy, ix], 0.0)
            count += ok
    valid = count >= 2
    score = np.where(valid, total / np.sqrt(np.maximum(count, 1.0)), -np.inf)
    return b1x, b1y, score


def _refine_lattice(shifted: F32, h: int, w: int, h0: int, w0: int, lat: Lattice) -> Lattice:
    """Least-squares basis from the sub-pixel peaks at every lattice point inside the copy.

    One peak gives a basis vector to ~0.3 px, i.e. ~0.15 degrees at a 128-px period: enough to
    misplace the 4-px cells by a whole cell at the far side of a 1024-px copy. Fitting the peaks
    at up to four periods out divides that error by the distance."""
    cy, cx = h // 2, w // 2
    rlim = min(0.75 * min(h0, w0), float(min(cy, cx) - 2))
    b1 = np.array(lat.b1, dtype=np.float64)
    b2 = np.array(lat.b2, dtype=np.float64)
    for _ in range(2):
        kmax = int(min(4, rlim // max(1.0, min(np.hypot(*b1), np.hypot(*b2)))))
        if kmax < 1:
            break
        rows, targets, weights = [], [], []
        for k in range(0, kmax + 1):
            for j in range(-kmax, kmax + 1):
                if (k == 0 and j <= 0) or abs(k) + abs(j) > kmax + 1:
                    continue
                p = k * b1 + j * b2  # (x, y)
                if np.hypot(*p) > rlim:
                    continue
                iy, ix = round(float(p[1])), round(float(p[0]))
                patch = shifted[cy + iy - 1:cy + iy + 2, cx + ix - 1:cx + ix + 2]
                if patch.shape != (3, 3):
                    continue
                j = int(np.argmax(patch))
                py, px = iy + j // 3 - 1, ix + j % 3 - 1
                value = float(shifted[cy + py, cx + px])
                if value <= 0:
                    continue
                fy, fx = _refine(shifted, cy + py, cx + px)
                rows.append((k, j))
                targets.append((fx - cx, fy - cy))
                weights.append(value)
        if len(rows) < 3:
            break
        a = np.array(rows, dtype=np.float64)
        t = np.array(targets, dtype=np.float64)
        wt = np.sqrt(np.array(weights))[:, None]
        sol, *_ = np.linalg.lstsq(a * wt, t * wt, rcond=None)
        if np.linalg.matrix_rank(a) < 2:
            break
        b1, b2 = sol[0], sol[1]
    refined = Lattice((float(b1[0]), float(b1[1])), (float(b2[0]), float(b2[1])), lat.strength)
    return refined if _plausible(refined, lat) else lat


def _plausible(lat: Lattice, seed: Lattice) -> bool:
    """A refinement stays near its seed and square-ish (a few stray peaks can pull a least-squares
    fit anywhere, up to a degenerate basis)."""
    n1, n2 = float(np.hypot(*lat.b1)), float(np.hypot(*lat.b2))
    if not (np.isfinite(n1) and np.isfinite(n2)) or min(n1, n2) < 8 or not 0.8 < n1 / n2 < 1.25:
        return False
    cos = abs(lat.b1[0] * lat.b2[0] + lat.b1[1] * lat.b2[1]) / (n1 * n2)
    moved = max(float(np.hypot(lat.b1[0] - seed.b1[0], lat.b1[1] - seed.b1[1])),
                float(np.hypot(lat.b2[0] - seed.b2[0], lat.b2[1] - seed.b2[1])))
    return cos < 0.2 and moved <= 0.1 * max(n1, n2) + 2


def _peak_near(shifted: F32, h: int, w: int, y: float, x: float) -> float:
    """Largest value of the (centred) autocorrelation within one pixel of lag (y, x); 0 outside."""
    cy, cx = round(y) + h // 2, round(x) + w // 2
    if not (1 <= cy < h - 1 and 1 <= cx < w - 1):
        return 0.0
    return float(shifted[cy - 1:cy + 2, cx - 1:cx + 2].max())


def fold(r: F32, lat: Lattice, whitened: bool = False, fine: bool = False) -> F32:
    """Mean of the residual per position of the canonical tile, the copy's geometry undone.

    The residual is warped back to the canonical frame (at half resolution when the copy was
    shrunk: the tile is then folded at 64 px and brought back to ``TILE``) and summed tile by
    tile; positions outside the copy do not count. The warped canvas starts at canonical
    ``(x0, y0)``: its tile sums are rolled by that offset (the same sums as rolling the canvas
    first, for a fraction of the cost: the unmarked-image search folds ~340 times).

    ``fine`` (the fifth revision's detector; only a shrunk copy's 64-px fold changes): the fold
    is whitened with ``hp_weight`` (see ``whiten``) and brought back to ``TILE`` by repeating each
    pixel 2 x 2, so that each 4-px cell of the tile sums exactly the 2 x 2 pixels its cell became
    in the halved copy (bilinear upsampling mixed an eighth of each neighbouring cell in)."""
    h, w = r.shape
    period = TILE if lat.scale >= SHRUNK_BELOW else TILE // 2
    basis = np.array([[lat.b1[0], lat.b2[0]], [lat.b1[1], lat.b2[1]]], dtype=np.float64) / period
    identity = bool(np.abs(basis - _EYE).max() <= 1e-9)
    if not identity and not MIN_FOLD_DET < abs(float(np.linalg.det(basis))) < MAX_FOLD_DET:
        return np.zeros((TILE, TILE), np.float32)  # a degenerate hypothesis: nothing to read
    if identity:
        sums = _tile_sums(r, period)
        counts = _ones_counts(h, w, period)
    else:
        corners = np.linalg.inv(basis) @ np.array([[0, w, 0, w], [0, 0, h, h]], dtype=np.float64)
        x0, y0 = np.floor(corners.min(axis=1))
        cw, ch = (np.ceil(corners.max(axis=1)) - (x0, y0)).astype(int) + 1
        # canvas (u, v) -> copy (x, y) = basis @ ((u, v) + (x0, y0))
        m = np.hstack([basis, basis @ np.array([[x0], [y0]])]).astype(np.float32)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        # the residual and its coverage warped together (one pass over the coordinates)
        both = np.asarray(cv2.warpAffine(cv2.merge([r, np.ones_like(r)]), m, (int(cw), int(ch)), flags=flags,
                                         borderValue=(0.0, 0.0)), np.float32)
        shift = (int(y0) % period, int(x0) % period)
        folded = _tile_sums(both, period)
        sums = np.roll(folded[:, :, 0], shift, axis=(0, 1))
        counts = np.roll(folded[:, :, 1], shift, axis=(0, 1))
    tile: F32 = (sums / np.maximum(counts, 1e-3)).astype(np.float32)
    fine = fine and period != TILE
    if whitened:
        # the residual's high-pass (sigma 1 copy pixel) in fold pixels: period / (TILE * scale)
        tile = whiten(tile, hp_sigma=period / (TILE * lat.scale) if fine else 0.0)
    if fine:
        tile = np.kron(tile, np.ones((TILE // period, TILE // period), np.float32))
    elif period != TILE:
        tile = np.asarray(cv2.resize(tile, (TILE, TILE), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
    return tile


_EYE = np.eye(2)


def _tile_sums(a: NDArray[np.float32], period: int) -> NDArray[np.float64]:
    """Sum of ``a`` (H x W, or H x W x C) per position modulo ``period`` (the image zero-padded
    to whole tiles), in float64."""
    h, w = a.shape[:2]
    ty, tx = -(-h // period), -(-w // period)
    if (ty * period, tx * period) != (h, w):
        padded = np.zeros((ty * period, tx * period, *a.shape[2:]), np.float32)
        padded[:h, :w] = a
        a = padded
    out: NDArray[np.float64] = a.reshape(ty, period, tx, period, *a.shape[2:]).sum(axis=(0, 2), dtype=np.float64)
    return out


@lru_cache(maxsize=32)  # bounded: a server sees many image sizes
def _ones_counts(h: int, w: int, period: int) -> NDArray[np.float64]:
    counts = _tile_sums(np.ones((h, w), np.float32), period)
    counts.flags.writeable = False
    return counts


WHITEN_BAND = 9  # frequencies (per axis) over which the folded tile's power is averaged
WHITEN_FLOOR = 0.3  # of the mean power, added to every frequency's (an estimate from 81 values is noisy)
HP_WEIGHT = 0.5  # ``whiten``'s ``hp_sigma``: the power of the high-pass response each frequency is weighed by


def whiten(folded: F32, band: int = WHITEN_BAND, hp_sigma: float = 0.0) -> F32:
    """The folded tile with its spectrum divided by its local power (a matched filter against a
    coloured host). What the host leaves in the folded tile is not white (textures such as grass
    and gravel, resampled copies): its strong frequencies drown the mark's weak ones when every
    frequency counts alike. Dividing each frequency by the mean power of the ``band`` x ``band``
    frequencies around it (circular; the mark's own share is one of many there) weighs each
    frequency by how much of the mark it can carry, the Wiener-like weighting of spread-spectrum
    detection; ``WHITEN_FLOOR`` keeps the weakest frequencies, whose power estimate is the least
    sure, from weighing the most. Applied at the fold's own period (a halved copy's 64-px fold is whitened before it
    is brought back to ``TILE``: whitening the upsampled tile would lift its empty band to full
    weight). One 128-px FFT; geometry-free.

    ``hp_sigma`` > 0 (the fifth revision, halved copies only): the mark reaches the fold through
    the residual's high-pass ``1 - G(sigma)``, so its share at frequency f is that response H(f)
    times the tile's; the matched filter weighs the whitened spectrum by H(f) too (whitening alone
    gives the frequencies the high-pass nearly emptied full weight). Measured on 150 halved small,
    grass and gravel copies at their true geometry, with the 2 x 2 repeat of ``fold``: 142 words
    decoded with H**0.5 (``HP_WEIGHT``), 143 with H**0.25, 141 with H, 142 without (the sync peak
    15.7 -> 17.7 with H**0.5: chosen between the two)."""
    spectrum = scipy.fft.fft2(folded.astype(np.float64))
    power = spectrum.real**2 + spectrum.imag**2
    smooth = scipy.ndimage.uniform_filter(power, size=band, mode="wrap")
    smooth += WHITEN_FLOOR * float(smooth.mean()) + 1e-12
    weighted = spectrum / smooth
    if hp_sigma > 0:
        f = np.fft.fftfreq(folded.shape[0])[:, None] ** 2 + np.fft.fftfreq(folded.shape[1])[None, :] ** 2
        weighted *= (1.0 - np.exp(-2.0 * np.pi**2 * hp_sigma**2 * f)) ** HP_WEIGHT
    out: F32 = scipy.fft.ifft2(weighted).real.astype(np.float32)
    return out


def align(folded: F32, lay: Layout) -> tuple[F32, float, tuple[int, int]]:
    """Undo the shift of a folded tile against the sync part: (aligned tile, sync peak z-score,
    the copy's origin in the marked image's tile grid, (x, y) modulo ``TILE``)."""
    corr = scipy.fft.irfft2(scipy.fft.rfft2(folded) * lay.sync_spectrum, s=folded.shape)
    peak = int(np.argmax(corr))
    dy, dx = divmod(peak, TILE)
    z = float((corr.ravel()[peak] - corr.mean()) / (corr.std() + 1e-12))
    return np.roll(folded, (-dy, -dx), axis=(0, 1)), z, ((-dx) % TILE, (-dy) % TILE)


def placements(copy_shape: tuple[int, int], lat: Lattice, origin: tuple[int, int],
               original_shape: tuple[int, int], slack: float = 0.03) -> list[NDArray[np.float64]]:
    """Where a copy can sit in the marked image (both at working resolution): 2x3 affine maps
    copy pixel -> marked-image pixel, one per origin ``origin + TILE * (i, j)`` that keeps the
    copy's footprint inside the marked image (within ``slack`` of its size)."""
    h, w = copy_shape
    oh, ow = original_shape
    basis = np.array([[lat.b1[0], lat.b2[0]], [lat.b1[1], lat.b2[1]]], dtype=np.float64) / TILE
    inv = np.linalg.inv(basis)
    corners = inv @ np.array([[0, w, 0, w], [0, 0, h, h]], dtype=np.float64)
    lo, hi = corners.min(axis=1), corners.max(axis=1)
    out = []
    for j in range(-1, oh // TILE + 2):
        for i in range(-1, ow // TILE + 2):
            ox, oy = origin[0] + TILE * i, origin[1] + TILE * j
            if (ox + lo[0] >= -slack * ow and ox + hi[0] <= ow * (1 + slack)
                    and oy + lo[1] >= -slack * oh and oy + hi[1] <= oh * (1 + slack)):
                out.append(np.hstack([inv, [[ox], [oy]]]))
    return out


def chip_scores(aligned: F32, lay: Layout) -> NDArray[np.float64]:
    """Per carried bit, a z-score: > 0 says 1, its size how sure (a soft value for Viterbi)."""
    side = TILE // CELL
    cells = aligned.reshape(side, CELL, side, CELL).sum(axis=(1, 3)).ravel().astype(np.float64)
    payload = lay.bit_of_cell >= 0
    contrib = cells[payload] * lay.chip[payload]
    sums = np.bincount(lay.bit_of_cell[payload], weights=contrib, minlength=lay.n_bits)
    noise = float(np.std(cells[payload])) * np.sqrt(np.bincount(lay.bit_of_cell[payload], minlength=lay.n_bits))
    z: NDArray[np.float64] = sums / np.maximum(noise, 1e-12)
    return z
