"""tileSync's fourth revision reads a whitened folded tile (``_tilesync.whiten``). Why these
tests: the change must lift what it was made for (a small render halved, where the host's
coloured residual drowns the mark), must not change the format (files marked before it still
verify, and its marks still read with the third revision's detector), and must keep unmarked
images from yielding an id (the bound counts words, not the whitening)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from gateway.provenance import _tilesync as ts
from gateway.provenance import make_watermarker
from gateway.provenance.marks import builtin_marks
from gateway.provenance.tilesync import TileSyncWatermarker

IDS = (11, 3333, 0x5A_17C3_E90F)


def _half(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return np.asarray(cv2.resize(rgb, (round(w * 0.5), round(h * 0.5)), interpolation=cv2.INTER_AREA))


def _encode(rgb: np.ndarray, fmt: str, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).copy()


@pytest.fixture(scope="module")
def mark() -> TileSyncWatermarker:
    marker = make_watermarker("tileSync")
    assert isinstance(marker, TileSyncWatermarker) and marker.whiten
    return marker


@pytest.fixture(scope="module")
def r3() -> TileSyncWatermarker:
    """The third revision: the same format, an unwhitened fold (embedder and detector)."""
    return TileSyncWatermarker(whiten=False)


@pytest.fixture(scope="module")
def small_render() -> np.ndarray:
    """A 256x171 render: a halved copy is 128x86 px, under one tile high."""
    return np.ascontiguousarray(cv2.resize(np.asarray(skimage.data.chelsea()), (256, 171),
                                           interpolation=cv2.INTER_AREA))


def test_a_halved_small_render_reads_only_with_whitening(mark: TileSyncWatermarker, r3: TileSyncWatermarker,
                                                         small_render: np.ndarray) -> None:
    """The third revision lost this render halved, whatever the id; the whitened fold reads it,
    its own marks and the third revision's alike (the gain is in the detector)."""
    for wm_id in IDS:
        new, old = mark.embed(small_render, wm_id), r3.embed(small_render, wm_id)
        assert cv2.PSNR(small_render, new) >= 40.0 and cv2.PSNR(small_render, old) >= 40.0
        assert r3.detect(_half(old)).wm_id is None
        assert mark.detect(_half(new)).wm_id == wm_id
        assert mark.detect(_half(old)).wm_id == wm_id


def test_the_format_is_unchanged(mark: TileSyncWatermarker, r3: TileSyncWatermarker) -> None:
    """Same method and version: third-revision files read with today's detector (through a crop
    and JPEG, WebP), and today's marks read with the third revision's detector."""
    assert (mark.method, mark.version) == ("tileSync", "1") and builtin_marks().spec("tileSync").version == "1"
    coffee = np.ascontiguousarray(skimage.data.coffee())
    old = r3.embed(coffee, 0x12_3456_789A)
    h, w = old.shape[:2]
    for copy in (old, _encode(np.ascontiguousarray(old[20:h - 10, 30:w - 5]), "JPEG", 80), _encode(old, "WEBP", 60)):
        assert mark.detect(copy).wm_id == 0x12_3456_789A
    new = mark.embed(coffee, 0x12_3456_789A)
    assert r3.detect(new).wm_id == 0x12_3456_789A
    assert r3.detect(_encode(new, "JPEG", 75)).wm_id == 0x12_3456_789A


def test_whitening_lifts_the_sync_over_a_coloured_host() -> None:
    """A folded tile whose host is 1/f-coloured (a photo's residual, a texture): the sync peak
    stands far higher once each frequency is divided by the power around it; on a white host
    the whitened tile is the tile, nearly (nothing to undo)."""
    lay = ts.layout(216)
    rng = np.random.default_rng(3)
    freq = np.fft.fftfreq(ts.TILE)
    radius = np.hypot(freq[:, None], freq[None, :])
    radius[0, 0] = 1.0
    coloured = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(ts.TILE, ts.TILE))) / radius**1.5))
    coloured = (coloured / coloured.std()).astype(np.float32)
    tile = (coloured + 0.08 * np.roll(lay.sync, (17, 40), axis=(0, 1))).astype(np.float32)
    _, plain_z, plain_origin = ts.align(tile, lay)
    _, white_z, white_origin = ts.align(ts.whiten(tile), lay)
    assert white_z > plain_z + 5 and white_z > 8
    assert white_origin == ((-40) % ts.TILE, (-17) % ts.TILE)
    white = rng.normal(size=(ts.TILE, ts.TILE)).astype(np.float32)
    assert np.corrcoef(white.ravel(), ts.whiten(white).ravel())[0, 1] > 0.9


def test_unmarked_small_images_still_yield_nothing(mark: TileSyncWatermarker, small_render: np.ndarray) -> None:
    """Whitening changes which hypotheses rank first, not how many words are checked: the bound
    stays (1 + 9 + 3) * 64 * 2**-32 (the fifth revision's halved geometry is the 1) and unmarked
    renders, halved or not, read nothing."""
    rng = np.random.default_rng(11)
    images = [small_render, _half(small_render), np.ascontiguousarray(skimage.data.grass()[:240, :320, None]
                                                                      .repeat(3, axis=2))]
    images += [rng.integers(0, 256, (200, 260, 3), dtype=np.uint8)]
    for image in images:
        found = mark.detect(np.ascontiguousarray(image))
        assert found.wm_id is None and found.false_accept_bound <= (1 + 9 + 3) * 64 * 2.0**-32
