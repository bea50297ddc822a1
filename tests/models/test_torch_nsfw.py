"""The torch-converted NSFW adapters (the GPU path) must give the scores of the ONNX Runtime
adapters on the same images: same weights, same pre- and post-processing, another runtime. Run
here on the CPU in fp32 (the extras venv has torch + onnx2torch); on a GPU the same code runs in
fp16 (bench/gpu_models.py reports the agreement there)."""

from __future__ import annotations

import numpy as np
import pytest

from classifiers.base import ModelError
from classifiers.registry import builtin_registry
from gateway.video.testing import load_source

pytest.importorskip("onnx2torch")

IMAGES = ["astronaut", "grace_hopper", "coffee"]


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [load_source(name) for name in IMAGES]


@pytest.mark.parametrize(("onnx_name", "torch_name"), [("nudenet", "nudenet-torch"),
                                                        ("opennsfw", "opennsfw-torch")])
def test_torch_adapter_matches_the_onnx_runtime_adapter(images: list[np.ndarray], onnx_name: str,
                                                       torch_name: str) -> None:
    registry = builtin_registry()
    reference = registry.create("nsfw", onnx_name).classify(images)
    converted = registry.create("nsfw", torch_name, {"device": "cpu", "batch_size": 2})
    got = converted.classify(images)
    assert len(got) == len(images)
    for ref, out in zip(reference, got, strict=True):
        assert set(out) == set(ref)
        worst = max(abs(out[k] - ref[k]) for k in ref)
        assert worst < 2e-3, (torch_name, worst, out, ref)
    # Same weights, so the same version; the name says which runtime produced the finding.
    assert converted.info.version == registry.create("nsfw", onnx_name).info.version
    assert converted.info.name == torch_name


def test_bad_options_are_clear_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    registry = builtin_registry()
    with pytest.raises(ModelError, match="device"):
        registry.create("nsfw", "nudenet-torch", {"device": "tpu"})
    with pytest.raises(ModelError, match="does not exist"):
        registry.create("nsfw", "opennsfw-torch", {"onnx": str(tmp_path / "missing.onnx")})
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA device"):
            registry.create("nsfw", "nudenet-torch", {"device": "cuda"})
