"""tileSync's fifth revision changes how the detector reads a *shrunk* copy (issue #23: >= 99 %
after a 0.5x resize). Why these tests: the change must read what it was made for (a small grass
render halved, which the fourth revision's detector loses whatever the id), must keep each 4-px
cell of a halved copy's fold the exact sum of the 2 x 2 pixels it became (the point of the
change), must leave the format alone (the fourth revision's detector still reads today's marks,
and the embedder is the same), and must count the one extra decoded hypothesis (the release
halved) in the false-accept bound."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from gateway.provenance import _tilesync as ts
from gateway.provenance import make_watermarker
from gateway.provenance.tilesync import HALF, TileSyncWatermarker

IDS = (11, 3333, 0x5A_17C3_E90F)


def _half(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return np.asarray(cv2.resize(rgb, (round(w * 0.5), round(h * 0.5)), interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="module")
def mark() -> TileSyncWatermarker:
    marker = make_watermarker("tileSync")
    assert isinstance(marker, TileSyncWatermarker) and marker.fine_half and marker.half_first
    return marker


@pytest.fixture(scope="module")
def r4() -> TileSyncWatermarker:
    """The fourth revision's detector: bilinear 64-px fold, one residual, no halved fast path."""
    marker = TileSyncWatermarker(fine_half=False)
    assert not marker.half_first
    return marker


@pytest.fixture(scope="module")
def grass() -> np.ndarray:
    """A 384x288 grass render: halved, 192x144 px of strong texture (the kind the fourth
    revision lost after 0.5x in the sharing table)."""
    grey = np.asarray(skimage.data.grass())
    return np.ascontiguousarray(cv2.resize(grey, (384, 288), interpolation=cv2.INTER_AREA)[..., None].repeat(3, axis=2))


def test_a_halved_grass_render_reads_with_the_fifth_revision(mark: TileSyncWatermarker, r4: TileSyncWatermarker,
                                                             grass: np.ndarray) -> None:
    for wm_id in IDS:
        marked = mark.embed(grass, wm_id)
        assert cv2.PSNR(grass, marked) >= 40.0
        copy = _half(marked)
        assert r4.detect(copy).wm_id is None
        found = mark.detect(copy)
        assert found.wm_id == wm_id and found.scale == pytest.approx(0.5, abs=0.01)
        # the fourth revision's detector still reads the unchanged copy: same embedder, same format
        assert r4.detect(marked).wm_id == wm_id


def test_a_halved_fold_sums_each_cell_exactly() -> None:
    """A pattern of 2 x 2-px cells repeating every 64 px (a marked tile halved) folds back to its
    4-px cells exactly with ``fine``; the bilinear upsampling of the fourth revision mixed an
    eighth of each neighbouring cell into every cell."""
    rng = np.random.default_rng(5)
    cells = rng.choice(np.array([-1.0, 1.0], np.float32), (32, 32))
    period = np.kron(cells, np.ones((2, 2), np.float32))  # 64 px
    residual = np.tile(period, (3, 4)).astype(np.float32)
    expected = np.kron(cells, np.ones((4, 4), np.float32))  # the 128-px tile, 4-px cells
    np.testing.assert_array_equal(ts.fold(residual, HALF, fine=True), expected)
    old = ts.fold(residual, HALF)
    assert np.abs(old - expected).max() > 0.4
    cell_sums = old.reshape(32, 4, 32, 4).sum(axis=(1, 3)) / 16
    assert 0.6 < float(np.mean(cell_sums * cells)) < 0.95


def test_the_halved_geometry_is_counted_in_the_bound(mark: TileSyncWatermarker, r4: TileSyncWatermarker) -> None:
    """An unmarked image makes the detector decode every hypothesis to its whole list: with the
    halved fast path that is (1 + 9 + 3) * 64 words (bound 1.9e-7 per image), one hypothesis more
    than the fourth revision's (9 + 3) * 64, and under the issue's 1e-6."""
    rng = np.random.default_rng(3)
    noise = cv2.GaussianBlur(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8), (0, 0), 1.5)
    found, old = mark.detect(noise), r4.detect(noise)
    assert found.wm_id is None and old.wm_id is None
    assert found.false_accept_bound == pytest.approx((1 + 9 + 3) * 64 * 2.0**-32) and found.false_accept_bound < 1e-6
    assert old.false_accept_bound == pytest.approx((9 + 3) * 64 * 2.0**-32)
