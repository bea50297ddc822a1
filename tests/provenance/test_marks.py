"""The ``watermark`` family's contract: every registered mark passes ``MarkContract``.

A new mark gets the whole suite by subclassing ``MarkContract`` and naming itself in
``method``; ``test_every_builtin_mark_has_a_contract_class`` fails until it does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pytest

from gateway.provenance import (
    MarkRegistry,
    MarkSpec,
    UnknownMarkError,
    Watermarker,
    WatermarkError,
    builtin_marks,
)
from gateway.provenance.c2pa_sign import ReleaseClaim, build_manifest
from gateway.provenance.payload import DWT_PAYLOAD
from tests.provenance.conftest import decode, encode


class MarkContract:
    """What every mark promises. Subclasses set ``method`` (and ``options`` if needed)."""

    method: ClassVar[str]
    options: ClassVar[Mapping[str, Any]] = {}
    min_psnr: ClassVar[float] = 38.0

    @pytest.fixture(scope="class")
    @classmethod
    def marker(cls) -> Watermarker:
        return builtin_marks().create(cls.method, cls.options)

    def test_registration_matches_the_adapter(self, marker: Watermarker) -> None:
        spec = builtin_marks().spec(self.method)
        assert isinstance(marker, Watermarker)
        assert (marker.method, marker.version) == (spec.name, spec.version)
        assert marker.codec == spec.codec and spec.version

    def test_round_trip_through_a_stripped_jpeg(self, marker: Watermarker, astronaut: np.ndarray) -> None:
        wm_id = marker.codec.new_id()
        marked = marker.embed(astronaut, wm_id)
        assert marked.shape == astronaut.shape and marked.dtype == np.uint8
        psnr = 10 * np.log10(255.0**2 / np.mean((marked.astype(float) - astronaut) ** 2))
        assert psnr >= self.min_psnr
        found = marker.detect(decode(encode(marked, "JPEG", quality=90)))
        assert found.wm_id == wm_id and found.method == self.method
        assert 0.0 < found.false_accept_bound <= 2.0**-8

    def test_unmarked_images_give_no_id(self, marker: Watermarker, coffee: np.ndarray,
                                        chelsea: np.ndarray) -> None:
        for image in (coffee, chelsea, np.full((300, 300, 3), 128, np.uint8)):
            assert marker.detect(image).wm_id is None

    def test_bad_input_is_a_watermark_error(self, marker: Watermarker) -> None:
        for bad in (np.zeros((8, 8, 3), np.uint8), np.zeros((300, 300), np.uint8),
                    np.zeros((300, 300, 3), np.float32)):
            with pytest.raises(WatermarkError):
                marker.embed(bad, 1)

    def test_fault_hook_fails_once(self, marker: Watermarker, coffee: np.ndarray) -> None:
        marker.faults.fail_next = True
        with pytest.raises(WatermarkError, match="injected fault"):
            marker.detect(coffee)
        assert marker.detect(coffee).wm_id is None

    def test_manifest_soft_binding_names_method_and_version(self, marker: Watermarker) -> None:
        manifest = build_manifest(ReleaseClaim("d" * 32, "p" * 64, watermark_id=5, watermark_method=marker.method,
                                               watermark_version=marker.version))
        soft = next(a for a in manifest["assertions"] if a["label"] == "c2pa.soft-binding")
        assert soft["data"]["alg"] == f"org.consentgate.watermark.{marker.method}.v{marker.version}"
        decision = next(a for a in manifest["assertions"] if a["label"] == "org.consentgate.decision")
        assert decision["data"]["watermark_version"] == marker.version


class TestDwtDctSvd(MarkContract):
    method = "dwtDctSvd"


class TestRivaGan(MarkContract):
    method = "rivaGan"


class TestTileSync(MarkContract):
    method = "tileSync"
    min_psnr = 40.0


CONTRACT_CLASSES = [TestDwtDctSvd, TestRivaGan, TestTileSync]


def test_every_builtin_mark_has_a_contract_class() -> None:
    # trustMark's contract class needs the operator's weights: tests/provenance/test_trustmark.py
    assert sorted([*(c.method for c in CONTRACT_CLASSES), "trustMark"]) == list(builtin_marks().names())


def test_registry_is_explicit_and_unique() -> None:
    registry = MarkRegistry()
    spec = MarkSpec("demo", "1", DWT_PAYLOAD)
    registry.register(spec, lambda options: builtin_marks().create("dwtDctSvd"))
    with pytest.raises(ValueError, match="already registered"):
        registry.register(spec, lambda options: builtin_marks().create("dwtDctSvd"))
    with pytest.raises(UnknownMarkError, match="registered methods: demo"):
        registry.create("lsb")
    # an adapter that reports another name than its registration is refused
    with pytest.raises(WatermarkError, match="registered as demo v1"):
        registry.create("demo")
