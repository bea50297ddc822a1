"""``_tilesync.fold`` sums the warped canvas tile by tile and rolls the sums by the canvas offset
(the unmarked-image search folds ~340 times per image; rolling and padding the whole canvas each
time was a third of the fold's cost). Why this test: the faster fold must give the tile the
canvas-rolling fold gave, for every kind of geometry hypothesis, or detection results change."""

from __future__ import annotations

import cv2
import numpy as np

from gateway.provenance import _tilesync as ts


def _canvas_fold(r: np.ndarray, lat: ts.Lattice) -> np.ndarray:
    """The fold as the fourth revision computed it: the warped canvas rolled, padded, then summed."""
    h, w = r.shape
    period = ts.TILE if lat.scale >= 0.75 else ts.TILE // 2
    basis = np.array([[lat.b1[0], lat.b2[0]], [lat.b1[1], lat.b2[1]]], dtype=np.float64) / period
    corners = np.linalg.inv(basis) @ np.array([[0, w, 0, w], [0, 0, h, h]], dtype=np.float64)
    x0, y0 = np.floor(corners.min(axis=1))
    cw, ch = (np.ceil(corners.max(axis=1)) - (x0, y0)).astype(int) + 1
    m = np.hstack([basis, basis @ np.array([[x0], [y0]])]).astype(np.float32)
    both = cv2.warpAffine(cv2.merge([r, np.ones_like(r)]), m, (int(cw), int(ch)),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=(0.0, 0.0))

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(a, ((0, -a.shape[0] % period), (0, -a.shape[1] % period)))

    shift = (int(y0) % period, int(x0) % period)
    sums = []
    for channel in (both[:, :, 0], both[:, :, 1]):
        rolled = np.roll(pad(np.ascontiguousarray(channel)), shift, axis=(0, 1))
        ty, tx = rolled.shape[0] // period, rolled.shape[1] // period
        sums.append(rolled.reshape(ty, period, tx, period).sum(axis=(0, 2), dtype=np.float64))
    tile = (sums[0] / np.maximum(sums[1], 1e-3)).astype(np.float32)
    if period != ts.TILE:
        tile = np.asarray(cv2.resize(tile, (ts.TILE, ts.TILE), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
    return tile


def test_fold_sums_the_tiles_as_the_canvas_roll_did() -> None:
    """Rolling the folded sums by the canvas offset is rolling the canvas before folding: the
    same tile for turned, shrunk, enlarged and odd-sized copies."""
    rng = np.random.default_rng(5)
    for shape in ((256, 256), (173, 301), (520, 389)):
        r = rng.normal(size=shape).astype(np.float32)
        for lat in (ts.Lattice((64.3, 0.0), (0.0, 64.3), 0.0), ts.Lattice((127.7, 4.4), (-4.4, 127.7), 0.0),
                    ts.Lattice((150.2, -2.0), (2.0, 149.1), 0.0), ts.Lattice((90.0, 1.0), (-1.5, 91.0), 0.0)):
            np.testing.assert_allclose(ts.fold(r, lat), _canvas_fold(r, lat), rtol=0, atol=1e-6)
