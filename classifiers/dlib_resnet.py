"""Why: dlib's face-recognition ResNet costs ~70 ms a face on CPU because `dlib-bin` is built without
BLAS; the same weights run by PyTorch (MKL / oneDNN) give the same descriptor several times faster.
The face model's identity is its weights file, not the library that multiplies them, so the embedding
can move to a faster engine while enrolled templates stay valid — if, and only if, the numbers agree
(tests/classifiers/test_dlib_resnet.py holds every engine to cosine >= 0.9999 against dlib itself).

`dlib_face_recognition_resnet_model_v1.dat` is dlib's own binary serialization of its `anet_type`
(dnn_face_recognition_ex.cpp): an `input_rgb_image_sized<150>` feeding a conv 7×7/2 + affine + relu +
max-pool 3×3/2, four levels of residual blocks (32, 64, 128, 256 filters; each block is
conv-affine-relu-conv-affine added to its input; the first block of a level has stride 2 and adds an
avg-pool 2×2/2 of its input), a global average pool and a 128×256 fully connected layer without bias.
`read_dlib_resnet` parses that format (layers bottom-up, see below) and refuses any file whose layer
sequence or shapes differ from that network, so a different file cannot be half-understood.

dlib's serialization, as used here: integers are a byte `n` (low nibble = byte count, bit 7 = sign)
then `n` little-endian bytes; strings are a length then bytes; floats/doubles are (mantissa, exponent)
integer pairs; a tensor is version 2, four dims (n, k, nr, nc), then n·k·nr·nc little-endian float32;
an alias tensor is version 1 and four dims. A network is the loss layer's details, then the version
of every layer top-down, then the input layer, then each layer bottom-up as its name + fields,
followed by three flag bytes and three (empty) state tensors.

Two numeric details of dlib that the engine reproduces: pooling and stride-2 convolutions have no
padding (so 150 → 72 → 35 → 17 → 8 → 4 → 2), and `add_prev` of two tensors of different shapes
zero-pads the smaller one at the high end of each dimension (channels, rows, columns) — in this
network the stride-2 branch is 3×3 against the pooled 4×4 (and 1×1 against 2×2) and has twice the
channels of the shortcut. Each affine layer is folded into the convolution before it.

Engines are registered by name in `EMBED_ENGINES` (explicit, no import-time probing); the dlib adapter
picks one (`embed_engine` option) and falls back to dlib's own when torch is missing.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classifiers._common import ort_run_options, ort_session_options
from classifiers.base import ModelError

CHIP_SIZE = 150
CHIP_PADDING = 0.25  # dlib's compute_face_descriptor: get_face_chip_details(shape, 150, 0.25)
DESCRIPTOR_DIM = 128

LAYER_NAMES = ("con_4", "affine_", "relu_", "add_prev_", "max_pool_2", "avg_pool_2", "fc_2")


@dataclass(frozen=True)
class Conv:
    """A convolution with the affine layer after it folded in: y = conv(x, weight) + bias."""

    weight: np.ndarray  # (out, in, kh, kw) float32
    bias: np.ndarray  # (out,) float32
    stride: int
    padding: int


@dataclass(frozen=True)
class Block:
    """conv-affine-relu-conv-affine, added to the input (avg-pooled 2×2/2 when `down`), then relu."""

    first: Conv
    second: Conv
    down: bool


@dataclass(frozen=True)
class DlibResnet:
    """The whole network, weights as float32 numpy arrays."""

    mean_rgb: tuple[float, float, float]
    stem: Conv
    blocks: tuple[Block, ...]
    fc: np.ndarray  # (256, 128): descriptor = pooled @ fc


class _Reader:
    def __init__(self, data: bytes | mmap.mmap) -> None:
        self.data = data
        self.pos = 0

    def integer(self) -> int:
        if self.pos >= len(self.data):
            raise ModelError("dlib resnet: unexpected end of file")
        head = self.data[self.pos]
        size = head & 0x0F
        if head & 0x70 or size > 8:
            raise ModelError(f"dlib resnet: bad integer at byte {self.pos}")
        raw = self.data[self.pos + 1: self.pos + 1 + size]
        if len(raw) != size:
            raise ModelError("dlib resnet: unexpected end of file")
        self.pos += 1 + size
        value = int.from_bytes(raw, "little")
        return -value if head & 0x80 else value

    def ints(self, n: int) -> list[int]:
        return [self.integer() for _ in range(n)]

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        return float(mantissa) * 2.0 ** exponent

    def string(self) -> str:
        n = self.integer()
        if n < 0 or n > 64 or self.pos + n > len(self.data):
            raise ModelError(f"dlib resnet: bad string at byte {self.pos}")
        text = self.data[self.pos: self.pos + n].decode("latin-1")
        self.pos += n
        return text

    def tensor(self) -> np.ndarray:
        if self.integer() != 2:
            raise ModelError(f"dlib resnet: unknown tensor version at byte {self.pos}")
        dims = self.ints(4)
        count = int(np.prod(dims))
        if count < 0 or self.pos + 4 * count > len(self.data):
            raise ModelError(f"dlib resnet: tensor of {dims} runs past the end of the file")
        arr = np.frombuffer(self.data, "<f4", count, self.pos)  # a view: the folded copies outlive the file
        self.pos += 4 * count
        return arr

    def alias(self) -> list[int]:
        if self.integer() != 1:
            raise ModelError(f"dlib resnet: unknown alias tensor version at byte {self.pos}")
        return self.ints(4)


def _layers(path: Path) -> tuple[tuple[float, float, float], list[tuple[str, dict[str, Any]]]]:
    """The input layer's mean and every layer bottom-up as (name, fields)."""
    with open(path, "rb") as fp:  # mapped, not read: the weights are viewed in place until folded
        r = _Reader(mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ))
    if r.integer() != 1 or r.string() != "loss_metric_2":
        raise ModelError(f"{path.name}: not a dlib loss_metric network")
    r.real(), r.real()  # margin, distance threshold (training only)
    while True:  # the version of every layer, top-down: 2 (add_layer), 1 (tag/skip), 3 (the bottom one)
        version = r.integer()
        if version == 3:
            break
        if version not in (1, 2):
            raise ModelError(f"{path.name}: unexpected layer version {version}")
    if r.string() != "input_rgb_image_sized":
        raise ModelError(f"{path.name}: the input layer is not input_rgb_image_sized")
    mean = (r.real(), r.real(), r.real())
    if r.ints(2) != [CHIP_SIZE, CHIP_SIZE]:
        raise ModelError(f"{path.name}: input is not {CHIP_SIZE}×{CHIP_SIZE}")
    layers: list[tuple[str, dict[str, Any]]] = []
    first = True
    while r.pos < len(r.data):
        name = r.string()
        fields: dict[str, Any] = {}
        if name == "con_4":
            fields["params"] = r.tensor()
            nf, nr, nc, sy, sx, py, px = r.ints(7)
            if nr != nc or sy != sx or py != px:
                raise ModelError(f"{path.name}: non-square convolution")
            fields["filters"] = r.alias()
            fields.update(out=nf, k=nr, stride=sy, padding=py)
            r.alias()  # biases
            for _ in range(4):
                r.real()  # learning-rate / weight-decay multipliers
        elif name == "affine_":
            fields["params"] = r.tensor()
            r.alias(), r.alias()
            if r.integer() != 0:
                raise ModelError(f"{path.name}: affine layer not in conv mode")
        elif name in ("max_pool_2", "avg_pool_2"):
            fields["window"] = r.ints(6)
        elif name == "fc_2":
            fields["out"], fields["in"] = r.ints(2)
            fields["params"] = r.tensor()
            r.alias(), r.alias()
            if r.integer() != 1:
                raise ModelError(f"{path.name}: fc layer has a bias (expected fc_no_bias)")
            for _ in range(4):
                r.real()
        elif name not in ("relu_", "add_prev_"):
            raise ModelError(f"{path.name}: unknown layer {name!r}")
        flags = r.data[r.pos: r.pos + 3]
        r.pos += 3
        if len(flags) != 3:
            raise ModelError(f"{path.name}: unexpected end of file")
        for _ in range(3):
            if r.tensor().size:
                raise ModelError(f"{path.name}: layer {name} carries state tensors")
        if first:  # the bottom add_layer (version 3) also stores its sample expansion factor
            if r.integer() != 1:
                raise ModelError(f"{path.name}: unexpected sample expansion factor")
            first = False
        layers.append((name, fields))
    return mean, layers


def _conv(con: dict[str, Any], affine: dict[str, Any], in_ch: int) -> Conv:
    out, k = con["out"], con["k"]
    if con["filters"] != [out, in_ch, k, k]:
        raise ModelError(f"dlib resnet: filters {con['filters']} where ({out}, {in_ch}, {k}, {k}) was expected")
    params = con["params"]
    n = out * in_ch * k * k
    if params.size != n + out or affine["params"].size != 2 * out:
        raise ModelError("dlib resnet: parameter count does not match the layer")
    weight = params[:n].reshape(out, in_ch, k, k)
    gamma, beta = affine["params"][:out], affine["params"][out:]
    folded = (weight.astype(np.float64) * gamma[:, None, None, None]).astype(np.float32)
    bias = (params[n:].astype(np.float64) * gamma + beta).astype(np.float32)
    return Conv(np.ascontiguousarray(folded), bias, con["stride"], con["padding"])


def read_dlib_resnet(path: Path) -> DlibResnet:
    """Parse dlib_face_recognition_resnet_model_v1.dat; ModelError unless it is exactly that network."""
    try:
        mean, layers = _layers(path)
    except (OSError, ValueError) as exc:  # ValueError: mmap of an empty file
        raise ModelError(f"cannot read {path}: {exc}") from exc
    names = [n for n, _ in layers]
    pos = 0

    def take(*expected: str) -> list[dict[str, Any]]:
        nonlocal pos
        got = names[pos: pos + len(expected)]
        if tuple(got) != expected:
            raise ModelError(f"{path.name}: layers {got} at {pos} where {list(expected)} was expected")
        fields = [f for _, f in layers[pos: pos + len(expected)]]
        pos += len(expected)
        return fields

    con, aff, _relu, pool = take("con_4", "affine_", "relu_", "max_pool_2")
    if pool["window"] != [3, 3, 2, 2, 0, 0] or con["k"] != 7 or con["stride"] != 2 or con["padding"] != 0:
        raise ModelError(f"{path.name}: unexpected stem")
    stem = _conv(con, aff, 3)
    channels = stem.weight.shape[0]
    blocks: list[Block] = []
    for width, count in ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1)):
        for i in range(count):
            down = i == 0 and (width, count) != (32, 3)
            c1, a1, _r, c2, a2 = take("con_4", "affine_", "relu_", "con_4", "affine_")
            if down:
                (avg,) = take("avg_pool_2")
                if avg["window"] != [2, 2, 2, 2, 0, 0]:
                    raise ModelError(f"{path.name}: unexpected shortcut pooling")
            take("add_prev_", "relu_")
            first, second = _conv(c1, a1, channels), _conv(c2, a2, width)
            strides = (first.stride, first.padding, second.stride, second.padding)
            if strides != ((2, 0, 1, 1) if down else (1, 1, 1, 1)):
                raise ModelError(f"{path.name}: unexpected stride/padding in a residual block")
            blocks.append(Block(first, second, down))
            channels = width
    avg, fc = take("avg_pool_2", "fc_2")
    if avg["window"] != [0, 0, 1, 1, 0, 0] or (fc["in"], fc["out"]) != (channels, DESCRIPTOR_DIM):
        raise ModelError(f"{path.name}: unexpected head")
    if pos != len(layers):
        raise ModelError(f"{path.name}: {len(layers) - pos} layers left over")
    weights = fc["params"].reshape(channels, DESCRIPTOR_DIM).astype(np.float32)  # a copy, not a view of the file
    return DlibResnet(mean, stem, tuple(blocks), weights)


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # int64 as protobuf encodes it
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes | str | int) -> bytes:
    """One protobuf field: an int as a varint, bytes/str as length-delimited."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    raw = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


class _OnnxGraph:
    """Just enough of ONNX's protobuf schema (onnx.proto, IR 8 / opset 17) to write this network
    without the `onnx` package, which the default install does not have; the tests check the result
    with `onnx.checker`. The weights are written straight from their arrays into one final buffer
    (no intermediate copies: a naive writer held ~120 MB more for the 22 MB of weights)."""

    FLOAT, UINT8, INT64 = 1, 2, 7

    def __init__(self) -> None:
        self.nodes: list[bytes] = []
        self.inits: list[tuple[bytes, memoryview]] = []  # (TensorProto up to raw_data's length, raw_data)
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def const(self, arr: np.ndarray) -> str:
        name = self.name("w")
        kind = {np.dtype(np.float32): self.FLOAT, np.dtype(np.int64): self.INT64}[arr.dtype]
        raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).data.cast("B")
        head = b"".join(_field(1, d) for d in arr.shape) + _field(2, kind) + _field(8, name)
        self.inits.append((head + _varint(9 << 3 | 2) + _varint(raw.nbytes), raw))
        return name

    def node(self, op: str, inputs: list[str], **attrs: int | list[int]) -> str:
        out = self.name(op.lower())
        body = b"".join(_field(1, i) for i in inputs) + _field(2, out) + _field(3, out) + _field(4, op)
        for key, value in attrs.items():
            if isinstance(value, int):
                attr = _field(1, key) + _field(3, value) + _field(20, 2)  # AttributeProto.INT
            else:
                attr = _field(1, key) + b"".join(_field(8, v) for v in value) + _field(20, 7)  # INTS
            body += _field(5, attr)
        self.nodes.append(body)
        return out

    @staticmethod
    def value_info(name: str, elem: int, dims: list[int | str]) -> bytes:
        shape = b"".join(_field(1, _field(2, d) if isinstance(d, str) else _field(1, d)) for d in dims)
        return _field(1, name) + _field(2, _field(1, _field(1, elem) + _field(2, shape)))

    def model(self, inp: bytes, out: bytes) -> bytes:
        chunks: list[bytes | memoryview] = [_field(1, n) for n in self.nodes]
        chunks.append(_field(2, "dlib_face_recognition_resnet_v1"))
        for head, raw in self.inits:
            chunks += [_varint(5 << 3 | 2) + _varint(len(head) + raw.nbytes) + head, raw]
        chunks += [_field(11, inp), _field(12, out)]
        size = sum(len(c) if isinstance(c, bytes) else c.nbytes for c in chunks)
        top = _field(1, 8) + _field(2, "consentgate") + _varint(7 << 3 | 2) + _varint(size)
        return b"".join([top, *chunks, _field(8, _field(1, "") + _field(2, 17))])


def onnx_model(net: DlibResnet) -> bytes:
    """The network as an ONNX model: input `chips` uint8 (N, 150, 150, 3) → `descriptors` float32 (N, 128)."""
    g = _OnnxGraph()

    def conv(x: str, c: Conv) -> str:
        k = c.weight.shape[2]
        return g.node("Conv", [x, g.const(c.weight), g.const(c.bias)], kernel_shape=[k, k],
                      strides=[c.stride, c.stride], pads=[c.padding] * 4)

    x = g.node("Transpose", [g.node("Cast", ["chips"], to=_OnnxGraph.FLOAT)], perm=[0, 3, 1, 2])
    mean = np.asarray(net.mean_rgb, np.float32).reshape(1, 3, 1, 1)
    x = g.node("Mul", [g.node("Sub", [x, g.const(mean)]), g.const(np.asarray(1 / 256, np.float32))])
    x = g.node("MaxPool", [g.node("Relu", [conv(x, net.stem)])], kernel_shape=[3, 3], strides=[2, 2])
    side, channels = _stem_side(), net.stem.weight.shape[0]
    for b in net.blocks:
        y = conv(g.node("Relu", [conv(x, b.first)]), b.second)
        width = b.second.weight.shape[0]
        if b.down:
            x = g.node("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
            pooled, strided = (side - 2) // 2 + 1, (side - 3) // 2 + 1
            side = max(pooled, strided)
            if strided < side:  # dlib's add_prev zero-pads the smaller tensor at the high end
                y = g.node("Pad", [y, g.const(np.array([0, 0, 0, 0, 0, 0, side - strided, side - strided], np.int64))])
            if channels < width:
                x = g.node("Pad", [x, g.const(np.array([0, 0, 0, 0, 0, width - channels, 0, 0], np.int64))])
        channels = width
        x = g.node("Relu", [g.node("Add", [x, y])])
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x])])
    g.nodes.append(_field(1, x) + _field(1, g.const(net.fc)) + _field(2, "descriptors") + _field(3, "fc")
                   + _field(4, "MatMul"))
    return g.model(_OnnxGraph.value_info("chips", _OnnxGraph.UINT8, ["n", CHIP_SIZE, CHIP_SIZE, 3]),
                   _OnnxGraph.value_info("descriptors", _OnnxGraph.FLOAT, ["n", DESCRIPTOR_DIM]))


def _stem_side() -> int:
    conv = (CHIP_SIZE - 7) // 2 + 1
    return (conv - 3) // 2 + 1


def _check_chips(chips: np.ndarray) -> None:
    if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3) or chips.dtype != np.uint8:
        raise ModelError(f"face chips must be uint8 (N, {CHIP_SIZE}, {CHIP_SIZE}, 3), got {chips.dtype} {chips.shape}")


class OnnxResnetEngine:
    """The network on ONNX Runtime (CPU), built in memory from the parsed weights (`onnx_model`), with its
    own intra-op thread count. `__call__(chips)`: uint8 (N, 150, 150, 3) RGB face chips, as dlib's
    `get_face_chip(img, shape, 150, 0.25)` cuts them → float32 (N, 128) raw descriptors. Thread-safe."""

    name = "onnxruntime"

    def __init__(self, net: DlibResnet, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError(f"embed engine 'onnxruntime' needs the onnxruntime package: {exc}") from exc
        opts = ort_session_options(ort, threads)  # as every ONNX session of the gateway
        self._run_options = ort_run_options()  # decided with the session, not per call
        try:
            self._session = ort.InferenceSession(onnx_model(net), sess_options=opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"embed engine 'onnxruntime' cannot build the dlib network: {exc}") from exc

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        _check_chips(chips)
        if len(chips) == 0:
            return np.zeros((0, DESCRIPTOR_DIM), np.float32)
        out = self._session.run(["descriptors"], {"chips": np.ascontiguousarray(chips)}, self._run_options)[0]
        return np.asarray(out, dtype=np.float32)


class TorchResnetEngine:
    """The network on PyTorch (CPU). `__call__(chips)`: uint8 (N, 150, 150, 3) RGB face chips, as dlib's
    `get_face_chip(img, shape, 150, 0.25)` cuts them → float32 (N, 128) raw (unnormalised) descriptors.
    Thread-safe (no state is written after construction); torch's intra-op thread count is the
    process's (set by the gateway's `model_threads`)."""

    name = "torch"

    def __init__(self, net: DlibResnet, threads: int = 0) -> None:
        del threads  # torch's thread pool is the process's: the engine leaves it alone
        try:
            import torch
        except ImportError as exc:
            raise ModelError(f"embed engine 'torch' needs the torch package: {exc}") from exc
        self._torch = torch

        def conv(c: Conv) -> tuple[Any, Any, int, int]:
            return torch.from_numpy(c.weight.copy()), torch.from_numpy(c.bias.copy()), c.stride, c.padding

        self._stem = conv(net.stem)
        self._blocks = [(conv(b.first), conv(b.second), b.down) for b in net.blocks]
        self._fc = torch.from_numpy(net.fc.copy())
        self._mean = torch.tensor(net.mean_rgb, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        _check_chips(chips)
        if len(chips) == 0:
            return np.zeros((0, DESCRIPTOR_DIM), np.float32)
        torch = self._torch
        f = torch.nn.functional
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2).float()
            x = (x - self._mean) / 256.0
            w, b, s, p = self._stem
            x = f.max_pool2d(f.relu(f.conv2d(x, w, b, s, p)), 3, 2)
            for (w1, b1, s1, p1), (w2, b2, s2, p2), down in self._blocks:
                y = f.conv2d(f.relu(f.conv2d(x, w1, b1, s1, p1)), w2, b2, s2, p2)
                if down:
                    x = f.avg_pool2d(x, 2, 2)
                    if x.shape != y.shape:  # dlib's add_prev: zero-pad the smaller at the high end
                        dc, dh, dw = (max(a, c) - c for a, c in zip(x.shape[1:], y.shape[1:], strict=True))
                        y = f.pad(y, (0, dw, 0, dh, 0, dc))
                        ec, eh, ew = (y.shape[i] - x.shape[i] for i in (1, 2, 3))
                        x = f.pad(x, (0, ew, 0, eh, 0, ec))
                x = f.relu(x + y)
            out = x.mean(dim=(2, 3)) @ self._fc
        return np.ascontiguousarray(out.numpy(), dtype=np.float32)


EmbedEngine = Callable[[np.ndarray], np.ndarray]
EngineFactory = Callable[[DlibResnet, int], EmbedEngine]

# Explicit registry of the engines that run the parsed network, by name (factory(net, threads)).
# "dlib" (dlib's own C++ network) is the adapter's built-in path and needs no entry.
EMBED_ENGINES: dict[str, EngineFactory] = {
    "onnxruntime": OnnxResnetEngine,
    "torch": TorchResnetEngine,
}
