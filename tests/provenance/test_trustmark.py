"""The trustMark adapter: loads TrustMark's ONNX pair from a local folder (never downloads), and
its pre/post-processing is exercised on a tiny encoder/decoder the test builds with TrustMark's
I/O (cover (1,3,256,256) + 100 bits -> stego; image -> 100 logits). With the real weights
(``CONSENTGATE_TRUSTMARK_DIR``), ``TestTrustMarkWeights`` runs the whole mark contract."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from gateway.provenance import Watermarker, WatermarkError, builtin_marks
from gateway.provenance.trustmark import SECRET_BITS, TrustMarkWatermarker
from tests.provenance.test_marks import MarkContract

onnx = pytest.importorskip("onnx")
helper = onnx.helper


def _tiny_pair(folder: Path, variant: str = "Q", eps: float = 0.05) -> Path:
    """Encoder: cover + eps * nearest-upsampled (sum_i (2 s_i - 1) P_i); decoder: 16x16 block
    means correlated with each P_i (zero-mean patterns, so a flat cover reads nothing)."""
    rng = np.random.default_rng(11)
    patterns = rng.choice([-1.0, 1.0], (SECRET_BITS, 768)).astype(np.float32)
    patterns -= patterns.mean(axis=1, keepdims=True)
    f32 = onnx.TensorProto.FLOAT

    def const(name: str, value: np.ndarray) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(value, name))

    enc = helper.make_graph([
        const("two", np.array(2.0, np.float32)), const("one", np.array(1.0, np.float32)),
        const("w", patterns), const("eps", np.array(eps, np.float32)),
        const("shape", np.array([1, 3, 16, 16], np.int64)),
        const("scales", np.array([1, 1, 16, 16], np.float32)),
        helper.make_node("Mul", ["secret", "two"], ["s2"]), helper.make_node("Sub", ["s2", "one"], ["pm"]),
        helper.make_node("MatMul", ["pm", "w"], ["flat"]), helper.make_node("Mul", ["flat", "eps"], ["scaled"]),
        helper.make_node("Reshape", ["scaled", "shape"], ["small"]),
        helper.make_node("Resize", ["small", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("Add", ["cover", "up"], ["stego"]),
    ], "tiny_encoder", [helper.make_tensor_value_info("cover", f32, [1, 3, 256, 256]),
                        helper.make_tensor_value_info("secret", f32, [1, SECRET_BITS])],
        [helper.make_tensor_value_info("stego", f32, [1, 3, 256, 256])])
    dec = helper.make_graph([
        const("wt", np.ascontiguousarray(patterns.T)), const("shape", np.array([1, 768], np.int64)),
        helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("Reshape", ["pooled", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "wt"], ["output"]),
    ], "tiny_decoder", [helper.make_tensor_value_info("image", f32, [1, 3, 256, 256])],
        [helper.make_tensor_value_info("output", f32, [1, SECRET_BITS])])
    folder.mkdir(parents=True, exist_ok=True)
    for graph, part in ((enc, "encoder"), (dec, "decoder")):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, str(folder / f"{part}_{variant}.onnx"))
    return folder


def test_missing_weights_are_a_clear_error_never_a_download(tmp_path: Path) -> None:
    with pytest.raises(WatermarkError, match="never downloaded"):
        builtin_marks().create("trustMark")
    with pytest.raises(WatermarkError, match=r"encoder_Q\.onnx not found"):
        builtin_marks().create("trustMark", {"model_dir": tmp_path})
    assert builtin_marks().spec("trustMark").weights == "local"


def test_loads_a_local_pair_and_round_trips(tmp_path: Path, coffee: np.ndarray) -> None:
    marker = builtin_marks().create("trustMark", {"model_dir": _tiny_pair(tmp_path / "tm")})
    assert isinstance(marker, TrustMarkWatermarker)
    flat = np.full((400, 600, 3), 120, np.uint8)
    marked = marker.embed(flat, 0xC0FFEE)
    assert marked.shape == flat.shape and np.abs(marked.astype(int) - 120).max() > 0
    found = marker.detect(marked)
    assert found.wm_id == 0xC0FFEE and found.false_accept_bound <= 16 * 2.0**-32
    assert marker.detect(flat).wm_id is None and marker.detect(coffee).wm_id is None


def test_a_broken_model_file_is_a_watermark_error(tmp_path: Path) -> None:
    folder = _tiny_pair(tmp_path / "tm")
    (folder / "decoder_Q.onnx").write_bytes(b"not an onnx model")
    marker = builtin_marks().create("trustMark", {"model_dir": folder})
    with pytest.raises(WatermarkError, match="cannot load models"):
        marker.detect(np.zeros((300, 300, 3), np.uint8))


WEIGHTS = os.environ.get("CONSENTGATE_TRUSTMARK_DIR", "")


@pytest.mark.skipif(not (WEIGHTS and (Path(WEIGHTS) / "encoder_Q.onnx").is_file()),
                    reason="TrustMark weights absent: set CONSENTGATE_TRUSTMARK_DIR to a folder with "
                           "encoder_Q.onnx and decoder_Q.onnx (never downloaded)")
class TestTrustMarkWeights(MarkContract):
    method = "trustMark"
    options: ClassVar = {"model_dir": WEIGHTS}

    def test_is_a_watermarker(self, marker: Watermarker) -> None:
        assert marker.method == "trustMark"
