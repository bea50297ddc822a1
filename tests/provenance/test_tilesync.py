"""tileSync, the default mark, tested the way the internet treats a render: re-encoded, resized,
cropped, rotated, recoloured — on the packaged test images and on flat graphics; unmarked
images (real and generated) never yield an id; the convolutional code corrects what it should."""

from __future__ import annotations

import io
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from PIL import Image

from gateway.provenance import WatermarkError, make_watermarker
from gateway.provenance.fec import coded_length, conv_encode, list_viterbi_decode, viterbi_decode
from gateway.provenance.tilesync import TileSyncWatermarker

Image8 = np.ndarray


def _encode(rgb: Image8, fmt: str, quality: int) -> Image8:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).copy()


def _resize(rgb: Image8, factor: float) -> Image8:
    h, w = rgb.shape[:2]
    return np.asarray(cv2.resize(rgb, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA))


def _crop(rgb: Image8, fraction: float) -> Image8:
    """Remove ``fraction`` of the area, off-centre (so the tile grid is shifted)."""
    h, w = rgb.shape[:2]
    keep = (1 - fraction) ** 0.5
    ch, cw = round(h * keep), round(w * keep)
    return np.ascontiguousarray(rgb[h - ch - 3:h - 3, 5:5 + cw])


def _rotate(rgb: Image8, degrees: float) -> Image8:
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return np.asarray(cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))


SHARING: dict[str, Callable[[Image8], Image8]] = {
    "jpeg q50": lambda x: _encode(x, "JPEG", 50),
    "webp q60": lambda x: _encode(x, "WEBP", 60),
    "resize 0.5x": lambda x: _resize(x, 0.5),
    "resize 0.75x + q80": lambda x: _encode(_resize(x, 0.75), "JPEG", 80),
    "crop 10% + q80": lambda x: _encode(_crop(x, 0.10), "JPEG", 80),
    "crop 25% + q80": lambda x: _encode(_crop(x, 0.25), "JPEG", 80),
    "rotate 2deg + q80": lambda x: _encode(_rotate(x, 2.0), "JPEG", 80),
    "brightness -20%": lambda x: np.clip(x * 0.8, 0, 255).astype(np.uint8),
    "contrast +20%": lambda x: np.clip((x - 128.0) * 1.2 + 128, 0, 255).astype(np.uint8),
}


@pytest.fixture(scope="module")
def mark() -> TileSyncWatermarker:
    marker = make_watermarker("tileSync")
    assert isinstance(marker, TileSyncWatermarker)
    return marker


def _psnr(a: Image8, b: Image8) -> float:
    return float(cv2.PSNR(np.ascontiguousarray(a), np.ascontiguousarray(b)))


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_survives_sharing(name: str, mark: TileSyncWatermarker, request: pytest.FixtureRequest) -> None:
    image = np.ascontiguousarray(request.getfixturevalue(name))
    wm_id = 0x5A_17C3_E90F
    marked = mark.embed(image, wm_id)
    assert _psnr(image, marked) >= 40.0
    lost = [label for label, transform in SHARING.items() if mark.detect(transform(marked)).wm_id != wm_id]
    assert lost == []


def test_geometry_is_reported(mark: TileSyncWatermarker, astronaut: Image8) -> None:
    marked = mark.embed(np.ascontiguousarray(astronaut), 77)
    same = mark.detect(marked)
    assert same.wm_id == 77 and same.scale == 1.0 and same.bit_accuracy_estimate is not None
    assert same.bit_accuracy_estimate > 0.9  # carried (coded) bits; the host image costs a few
    assert same.confidence is not None and same.confidence > 1 - 1e-6
    copy = mark.detect(_encode(_rotate(_resize(marked, 0.75), 2.0), "JPEG", 85))
    assert copy.wm_id == 77
    assert copy.scale == pytest.approx(0.75, abs=0.01) and copy.rotation_deg == pytest.approx(-2.0, abs=0.3)
    assert copy.bit_accuracy_estimate is not None and 0.6 < copy.bit_accuracy_estimate <= 1.0


def test_flat_graphics_and_gradients_carry_the_mark(mark: TileSyncWatermarker) -> None:
    flat = np.full((384, 512, 3), (40, 120, 200), np.uint8)
    ramp = np.tile(np.linspace(0, 255, 512, dtype=np.float32)[None, :, None], (384, 1, 3)).astype(np.uint8)
    for image in (flat, ramp):
        marked = mark.embed(image, 1234)
        assert _psnr(image, marked) >= 40.0
        assert mark.detect(_encode(_crop(marked, 0.10), "JPEG", 60)).wm_id == 1234


def test_unmarked_images_never_decode(mark: TileSyncWatermarker, astronaut: Image8, coffee: Image8,
                                      chelsea: Image8, grace_hopper: Image8) -> None:
    rng = np.random.default_rng(7)
    images = [astronaut, coffee, chelsea, grace_hopper]
    images += [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(10)]
    images += [cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), (0, 0), s) for s in (1, 3, 8)]
    images += [np.tile(((np.indices((320, 320)).sum(axis=0) // 16) % 2 * 255).astype(np.uint8)[..., None], (1, 1, 3))]
    for image in images:
        found = mark.detect(np.ascontiguousarray(image))
        # (1 + 9 + 3) hypotheses (the halved geometry, the identity and the search, the second
        # look) decoded to their whole lists of 64 words: at most 1.9e-7
        assert found.wm_id is None and found.false_accept_bound <= (1 + 9 + 3) * 64 * 2.0**-32 <= 1e-6


def test_a_mark_on_another_id_is_not_confused(mark: TileSyncWatermarker, coffee: Image8) -> None:
    assert mark.detect(mark.embed(np.ascontiguousarray(coffee), 1)).wm_id == 1
    assert mark.detect(mark.embed(np.ascontiguousarray(coffee), 2)).wm_id == 2


def test_size_limits(mark: TileSyncWatermarker) -> None:
    with pytest.raises(WatermarkError, match="below the minimum size"):
        mark.embed(np.zeros((100, 400, 3), np.uint8), 1)
    assert mark.detect(np.zeros((64, 64, 3), np.uint8)).wm_id is None
    with pytest.raises(WatermarkError):
        mark.detect(np.zeros((32, 32, 3), np.uint8))


def test_large_images_are_marked_at_a_working_resolution(mark: TileSyncWatermarker, astronaut: Image8) -> None:
    big = np.asarray(cv2.resize(np.ascontiguousarray(astronaut), (2048, 1536), interpolation=cv2.INTER_CUBIC))
    marked = mark.embed(big, 99)
    assert _psnr(big, marked) >= 40.0
    assert mark.detect(_encode(_resize(marked, 1080 / 2048), "JPEG", 80)).wm_id == 99


def test_convolutional_code_corrects_scattered_errors() -> None:
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2, 72).astype(np.uint8)
    coded = conv_encode(bits)
    assert coded.shape == (coded_length(72),) == (234,)
    llr = 2.0 * coded - 1.0
    flipped = llr.copy()
    flipped[rng.choice(234, 20, replace=False)] *= -1  # ~8.5% of the coded bits wrong
    assert np.array_equal(viterbi_decode(flipped, 72), bits)
    assert not np.array_equal(viterbi_decode(-llr, 72), bits)


def test_list_viterbi_lists_the_likeliest_words_in_order() -> None:
    """The list decoder's first word is Viterbi's; the words are distinct and ordered by path
    metric; on a noisy word (~18 % of the coded bits wrong) Viterbi's best is wrong and the sent
    word is further down the list."""
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2, 72).astype(np.uint8)
    coded = conv_encode(bits)
    llr = (2.0 * coded - 1.0) + rng.normal(size=234) * 1.3
    words = list_viterbi_decode(llr, 72, 64)
    assert len(words) == 64 and len({w.tobytes() for w in words}) == 64
    assert np.array_equal(words[0], viterbi_decode(llr, 72))
    metrics = [float(llr @ (2.0 * conv_encode(w) - 1.0)) for w in words]
    assert all(a >= b - 1e-9 for a, b in zip(metrics, metrics[1:], strict=False))
    assert not np.array_equal(words[0], bits)
    assert any(np.array_equal(w, bits) for w in words[1:8])


def test_a_copy_is_put_back_where_it_sat(mark: TileSyncWatermarker, coffee: Image8, chelsea: Image8) -> None:
    """Crop, resize and rotation undone from the mark alone: the placed copy's PDQ is near the
    release's, the copy's own PDQ is not; another picture carrying the same mark stays far."""
    from classifiers.hash_pdq import PdqHasher, hamming

    hasher = PdqHasher()
    marked = mark.embed(np.ascontiguousarray(coffee), 42)
    released = hasher.hashes(marked)[0]
    h, w = marked.shape[:2]
    copy = _encode(_resize(np.ascontiguousarray(marked[50:50 + int(h * 0.87), 12:12 + int(w * 0.87)]), 0.75),
                   "JPEG", 75)
    found = mark.detect(copy)
    assert found.wm_id == 42 and found.placement is not None
    assert hamming(hasher.hashes(copy)[0], released) > 60
    placed = mark.placements(copy, found, (w, h))
    assert 1 <= len(placed) <= 9 and min(hamming(hasher.hashes(p)[0], released) for p in placed) <= 60
    other = mark.embed(np.ascontiguousarray(chelsea), 42)
    found_other = mark.detect(other)
    assert all(hamming(hasher.hashes(p)[0], released) > 90 for p in mark.placements(other, found_other, (w, h)))


def _small_render(image: Image8) -> Image8:
    """A 320x240 render: few tiles, so the host image's own texture weighs on every bit."""
    return np.ascontiguousarray(image[30:270, 50:370])


def test_informed_embedding_cancels_the_host(mark: TileSyncWatermarker, chelsea: Image8) -> None:
    """On a small textured render the host flips bits before the internet does anything; the
    informed embedder (per-bit gains against the host's own contribution) reads cleaner at the
    same PSNR and survives a halving the plain embedder does not (for the second revision's
    decoder; today's list decoder reads both)."""
    small = _small_render(np.ascontiguousarray(chelsea))
    plain = TileSyncWatermarker(informed=False)
    previous = TileSyncWatermarker(list_size=1, second_decodes=0, whiten=False)
    for wm_id in (11, 3333):
        informed_copy, plain_copy = mark.embed(small, wm_id), plain.embed(small, wm_id)
        assert 40.0 <= _psnr(small, informed_copy) <= 41.0 and 40.0 <= _psnr(small, plain_copy) <= 41.0
        informed_acc = mark.raw_bit_accuracy(informed_copy, wm_id)
        plain_acc = mark.raw_bit_accuracy(plain_copy, wm_id)
        assert informed_acc >= 0.96 and informed_acc >= plain_acc + 0.03
        # read by the second revision's decoder (one Viterbi word per hypothesis): only the informed copy
        assert previous.detect(_resize(informed_copy, 0.5)).wm_id == wm_id
        assert previous.detect(_resize(plain_copy, 0.5)).wm_id is None
        # today's list decoder also reads the plain one (its right word is further down the list)
        assert mark.detect(_resize(informed_copy, 0.5)).wm_id == wm_id
        assert mark.detect(_resize(plain_copy, 0.5)).wm_id == wm_id


def test_marks_from_the_first_embedder_still_read(mark: TileSyncWatermarker, coffee: Image8) -> None:
    """tileSync v1 files released before informed embedding (plain spread spectrum) carry the
    same tile layout, code and sync: today's detector reads them, also through a crop and JPEG."""
    first = TileSyncWatermarker(informed=False)
    marked = first.embed(np.ascontiguousarray(coffee), 0x12_3456_789A)
    for copy in (marked, _encode(_crop(marked, 0.10), "JPEG", 80), _encode(marked, "WEBP", 60)):
        assert mark.detect(copy).wm_id == 0x12_3456_789A


def test_small_copies_are_found_by_the_sync_search(mark: TileSyncWatermarker, coffee: Image8) -> None:
    """A 320x240 render halved (160x120: under two tiles) and one straightened by 2 degrees are
    read after the scale sweep / polish find their geometry; the report says which."""
    small = _small_render(np.ascontiguousarray(coffee))
    marked = mark.embed(small, 505)
    half = mark.detect(_encode(_resize(marked, 0.5), "JPEG", 90))
    assert half.wm_id == 505 and half.scale == pytest.approx(0.5, abs=0.01)
    turned = mark.detect(_rotate(marked, 2.0))
    assert turned.wm_id == 505 and turned.rotation_deg == pytest.approx(-2.0, abs=0.2)


def _one_over_f(rng: np.random.Generator, side: int) -> Image8:
    """A 1/f noise field (grey): no structure for the autocorrelation to lock onto but the mark's."""
    freq = np.fft.fftfreq(side)
    radius = np.hypot(freq[:, None], freq[None, :])
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=(side, side)) + 1j * rng.normal(size=(side, side))) / radius
    field = np.real(np.fft.ifft2(spectrum))
    field = (field - field.mean()) / (field.std() + 1e-9) * 50 + 128
    return np.ascontiguousarray(np.repeat(np.clip(field, 0, 255).astype(np.uint8)[..., None], 3, axis=2))


def _straighten(rgb: Image8, degrees: float) -> Image8:
    """Rotate about the centre and crop to the inside (a photo editor's 'straighten')."""
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    turned = np.asarray(cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    t = np.tan(np.radians(abs(degrees)))
    dy, dx = int(np.ceil(w / 2 * t)) + 1, int(np.ceil(h / 2 * t)) + 1
    return np.ascontiguousarray(turned[dy:h - dy, dx:w - dx])


def test_a_straightened_noise_field_is_found_by_the_second_look(mark: TileSyncWatermarker) -> None:
    """On a 1/f noise field turned by 2 degrees the autocorrelation's lattice peaks drown in the
    host's and the first search reads nothing (not even with list decoding); the second look's
    rotation sweep, ranked by sync correlation alone, finds the turn — within the same
    false-accept budget, (9 + 3) * 64 words. The third revision (unwhitened fold) reads both
    fields; the fourth reads the first and loses the second (its whitened scores do not decode
    at the hypothesis the polish finds: a known loss, reported in docs/api.md)."""
    r3 = TileSyncWatermarker(whiten=False)
    for marker, seeds in ((r3, (0, 2)), (mark, (0,))):
        first_search_only = TileSyncWatermarker(second_decodes=0, whiten=marker.whiten)
        for seed in seeds:
            copy = _straighten(marker.embed(_one_over_f(np.random.default_rng(seed), 384), 4242), 2.0)
            assert first_search_only.detect(copy).wm_id is None
            found = marker.detect(copy)
            assert found.wm_id == 4242 and found.rotation_deg == pytest.approx(-2.0, abs=0.2)
            assert 9 * 64 * 2.0**-32 < found.false_accept_bound <= (1 + 9 + 3) * 64 * 2.0**-32


def test_saturated_graphics_get_the_full_mark(mark: TileSyncWatermarker) -> None:
    """Black-and-white art clips half of the mark away (no pixel goes above 255); the embedder
    measures the PSNR of the marked image itself and puts the clipped energy back, so the image
    ends at the target PSNR (not ~43 dB) and the mark survives JPEG q50 (it did not at 43 dB)."""
    yy, xx = np.mgrid[0:512, 0:640]
    blobs = ((np.sin(yy / 23.0) + np.cos(xx / 31.0) + np.sin((xx + yy) / 17.0)) > 0.4).astype(np.uint8) * 255
    art = np.ascontiguousarray(np.repeat(blobs[..., None], 3, axis=2))
    marked = mark.embed(art, 8080)
    assert 40.0 <= _psnr(art, marked) <= 41.0
    assert mark.detect(_encode(marked, "JPEG", 50)).wm_id == 8080


def test_a_degenerate_geometry_hypothesis_reads_nothing() -> None:
    """A least-squares fit pulled by stray peaks can return a near-singular lattice; folding it
    would mean a canvas of tens of gigabytes (seen on an unmarked noise image). Such a hypothesis
    reads as an empty tile, and a refinement that leaves its seed's shape is thrown away."""
    from gateway.provenance import _tilesync as ts

    r = np.random.default_rng(1).normal(size=(256, 256)).astype(np.float32)
    for lattice in (ts.Lattice((0.5, 0.0), (0.0, 0.5), 0.0), ts.Lattice((128.0, 0.0), (127.0, 1.0), 0.0),
                    ts.Lattice((4000.0, 0.0), (0.0, 4000.0), 0.0)):
        tile = ts.fold(r, lattice)
        assert tile.shape == (ts.TILE, ts.TILE) and not tile.any()
    seed = ts.Lattice((128.0, 0.0), (0.0, 128.0), 1.0)
    assert ts._plausible(ts.Lattice((128.4, 1.0), (-1.0, 128.2), 1.0), seed)
    assert not ts._plausible(ts.Lattice((128.0, 0.0), (120.0, 40.0), 1.0), seed)
    assert not ts._plausible(ts.Lattice((60.0, 0.0), (0.0, 60.0), 1.0), seed)
