"""Watermarks on the real test images: the id survives metadata stripping + JPEG q75, a 0.5x
resize and brightness; unmarked images never yield an id; sizes and faults fail clearly."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
import skimage.data

from gateway.provenance import (
    DwtDctSvdWatermarker,
    RivaGanWatermarker,
    UnknownMarkError,
    WatermarkError,
    make_watermarker,
    new_watermark_id,
)
from tests.provenance.conftest import decode, encode

DWT_ID = 0xA5_1C3E_90F7
RIVA_ID = 0x5E_A17C


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(cv2.PSNR(np.ascontiguousarray(a), np.ascontiguousarray(b)))


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    return decode(encode(rgb, "JPEG", quality=quality))


@pytest.fixture(scope="module")
def dwt() -> DwtDctSvdWatermarker:
    return DwtDctSvdWatermarker()


@pytest.mark.parametrize("name", ["astronaut", "coffee", "grace_hopper"])
def test_dwt_round_trip_survives_stripping_and_jpeg_q75(name: str, dwt: DwtDctSvdWatermarker,
                                                         request: pytest.FixtureRequest) -> None:
    image = request.getfixturevalue(name)
    wm_id = DWT_ID  # fixed: robustness results are deterministic for a given id and image
    marked = dwt.embed(image, wm_id)
    assert marked.shape == image.shape and marked.dtype == np.uint8
    assert _psnr(image, marked) > 38.0
    assert dwt.detect(marked).wm_id == wm_id
    copy = _jpeg(marked, 75)  # PIL re-encode: pixels only, no metadata
    found = dwt.detect(copy)
    assert found.wm_id == wm_id and found.method == "dwtDctSvd"
    assert found.bit_accuracy_estimate is not None and found.bit_accuracy_estimate > 0.9
    assert found.false_accept_bound <= 2.0 ** -24


def test_dwt_survives_half_resize_and_brightness(astronaut: np.ndarray, dwt: DwtDctSvdWatermarker) -> None:
    wm_id = DWT_ID  # fixed: robustness results are deterministic for a given id and image
    marked = dwt.embed(astronaut, wm_id)
    half = np.asarray(cv2.resize(marked, (256, 256), interpolation=cv2.INTER_AREA), dtype=np.uint8)
    found = dwt.detect(half)
    assert found.wm_id == wm_id and found.scale == 2.0
    brighter = np.clip(marked.astype(np.float32) * 1.1, 0, 255).astype(np.uint8)
    assert dwt.detect(brighter).wm_id == wm_id


def _unmarked_images() -> list[np.ndarray]:
    sk: Any = skimage.data
    bases = [sk.astronaut(), sk.coffee(), sk.chelsea(), sk.rocket(), np.stack([sk.camera()] * 3, -1),
             np.stack([sk.moon()] * 3, -1), sk.immunohistochemistry(), np.stack([sk.page()] * 3, -1)]
    variants: list[np.ndarray] = []
    for img in bases:
        h, w = img.shape[:2]
        variants += [img, img[:, ::-1], img[h // 8:, w // 8:], _jpeg(img, 60),
                     np.clip(img.astype(np.int16) + 20, 0, 255).astype(np.uint8),
                     cv2.resize(img, (w * 3 // 2, h * 3 // 2))]
    flat = [np.full((300, 300, 3), v, np.uint8) for v in (0, 128, 255)]
    noise = [np.random.default_rng(s).integers(0, 256, (320, 320, 3), dtype=np.uint8) for s in range(3)]
    return [np.ascontiguousarray(v) for v in variants + flat + noise if v.shape[0] * v.shape[1] >= 256 * 256]


def test_unmarked_images_never_decode_to_an_id(dwt: DwtDctSvdWatermarker) -> None:
    images = _unmarked_images()
    assert len(images) >= 48
    found = [dwt.detect(img).wm_id for img in images]
    assert found == [None] * len(images)


def test_imwatermark_reads_our_marks_and_we_read_theirs(astronaut: np.ndarray,
                                                        dwt: DwtDctSvdWatermarker) -> None:
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    wm_id = DWT_ID  # fixed: robustness results are deterministic for a given id and image
    bits = dwt.codec.encode(wm_id)
    ours = dwt.embed(astronaut, wm_id)
    theirs_read = WatermarkDecoder("bits", 72).decode(np.ascontiguousarray(ours[:, :, ::-1]), "dwtDctSvd")
    assert np.array_equal(np.asarray(theirs_read, dtype=np.uint8), bits)
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", bits.tolist())
    theirs = encoder.encode(np.ascontiguousarray(astronaut[:, :, ::-1]), "dwtDctSvd")[:, :, ::-1]
    assert dwt.detect(np.ascontiguousarray(theirs)).wm_id == wm_id
    assert _psnr(astronaut, ours) > _psnr(astronaut, theirs)  # no swapped detail bands


def test_odd_sizes_and_strength_changes(astronaut: np.ndarray) -> None:
    odd = np.ascontiguousarray(astronaut[:401, :387])
    old = DwtDctSvdWatermarker(strength=48)
    wm_id = DWT_ID  # fixed: robustness results are deterministic for a given id and image
    marked = old.embed(odd, wm_id)
    assert marked.shape == odd.shape
    assert DwtDctSvdWatermarker(strength=36).detect(marked).wm_id is None
    assert DwtDctSvdWatermarker(strength=36, detect_strengths=(36, 48)).detect(marked).wm_id == wm_id


def test_small_or_malformed_images_raise_watermark_error(dwt: DwtDctSvdWatermarker) -> None:
    with pytest.raises(WatermarkError, match="minimum size"):
        dwt.embed(np.zeros((200, 200, 3), np.uint8), 1)
    with pytest.raises(WatermarkError, match="minimum size"):
        dwt.embed(np.zeros((40, 4000, 3), np.uint8), 1)
    with pytest.raises(WatermarkError):
        dwt.embed(np.zeros((300, 300), np.uint8), 1)
    with pytest.raises(WatermarkError):
        dwt.detect(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ValueError):
        dwt.embed(np.zeros((300, 300, 3), np.uint8), 1 << 40)


def test_fault_hook_fails_once(astronaut: np.ndarray) -> None:
    wm = DwtDctSvdWatermarker()
    wm.faults.fail_next = True
    with pytest.raises(WatermarkError, match="injected"):
        wm.embed(astronaut, 5)
    assert wm.detect(wm.embed(astronaut, 5)).wm_id == 5


def test_factory_and_ids() -> None:
    assert isinstance(make_watermarker("dwtDctSvd", strength=40), DwtDctSvdWatermarker)
    assert isinstance(make_watermarker("rivaGan"), RivaGanWatermarker)
    with pytest.raises(UnknownMarkError, match="unknown watermark method 'lsb'; registered methods: "):
        make_watermarker("lsb")
    ids = {new_watermark_id("dwtDctSvd") for _ in range(100)}
    assert len(ids) == 100 and max(ids) < 1 << 40
    assert all(new_watermark_id("rivaGan") < 1 << 24 for _ in range(100))


@pytest.fixture(scope="module")
def riva() -> RivaGanWatermarker:
    return RivaGanWatermarker()


def test_rivagan_survives_crop_and_jpeg(astronaut: np.ndarray, riva: RivaGanWatermarker) -> None:
    wm_id = RIVA_ID
    marked = riva.embed(astronaut, wm_id)
    assert _psnr(astronaut, marked) > 38.0
    cropped = np.ascontiguousarray(marked[26:486, 26:486])  # 10% off
    found = riva.detect(_jpeg(cropped, 75))
    assert found.wm_id == wm_id and found.needs_confirmation and found.false_accept_bound == 2.0 ** -8


def test_rivagan_unmarked_images_give_no_id(coffee: np.ndarray, chelsea: np.ndarray,
                                            riva: RivaGanWatermarker) -> None:
    assert riva.detect(coffee).wm_id is None
    assert riva.detect(chelsea).wm_id is None
