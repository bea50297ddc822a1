"""Why: on a GPU machine the NSFW models should run on the GPU, in large batches (a single image is
no faster there than on the CPU; in batches of 32 the networks took 3-9 % of the adapter's time on
an H100, the shared CPU pre/post-processing the rest — docs/models.md). ONNX
Runtime's CUDA provider is not always installed (the H100 image we measured on has none), so
these adapters convert the *same* ONNX weights to PyTorch with `onnx2torch` when they load and
run them on `device` (CUDA when present, fp16 there), with the ONNX adapters' own pre- and
post-processing. Scores therefore agree with `nudenet` / `opennsfw` (contract test), and the
model version is the same weights digest; only the name (`nudenet-torch`, `opennsfw-torch`)
says which runtime produced a finding.

Options (both): `device` ("auto" | "cpu" | "cuda" | "cuda:N"; auto = cuda when available),
`half` (fp16; default true on CUDA, false on CPU), `batch_size` (default 32), `onnx` (path of
the ONNX file; default: the one in the weights package, as for the ONNX Runtime adapters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifiers._common import Options, check_rgb, weights_digest
from classifiers.base import ModelError, ModelInfo
from classifiers.nsfw_nudenet import NUDENET_LABELS, NudeNetClassifier, _postprocess, _preprocess
from classifiers.nsfw_opennsfw import _weights_path, preprocess

__all__ = ["TorchNudeNet", "TorchOpenNsfw"]


class _Converted:
    """An ONNX graph converted to a torch module on one device."""

    def __init__(self, name: str, path: Path, device: str, half: bool | None) -> None:
        try:
            import onnx2torch
            import torch
        except ImportError as exc:
            raise ModelError(f"{name}: needs torch and onnx2torch (the [extras] install): {exc}") from exc
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"{name}: device {device!r} asked for, but torch sees no CUDA device")
        self.torch = torch
        self.device = torch.device(device)
        self.half = (self.device.type == "cuda") if half is None else half
        try:
            module = onnx2torch.convert(str(path)).eval().to(self.device)
        except Exception as exc:
            raise ModelError(f"{name}: cannot convert {path} to torch: {exc}") from exc
        self.module = module.half() if self.half else module
        self.name = name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        try:
            with torch.inference_mode():
                tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True)
                out = self.module(tensor.half() if self.half else tensor)
                if isinstance(out, (tuple, list)):
                    out = out[0]
                return np.asarray(out.float().cpu().numpy())
        except Exception as exc:
            raise ModelError(f"{self.name}: inference failed: {exc}") from exc


def _options(name: str, options: Mapping[str, Any] | None) -> tuple[str, bool | None, int, Path | None]:
    opts = Options(name, options, {"device", "half", "batch_size", "onnx"})
    device = str(opts.get("device", "auto", str))
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ModelError(f"{name}: device must be auto, cpu, cuda or cuda:N, not {device!r}")
    half = opts.get("half", False, bool) if options and "half" in options else None
    batch = opts.positive_int("batch_size", 32)
    raw = opts.get("onnx", "", (str, Path))
    path = Path(raw) if str(raw) else None
    if path is not None and not path.is_file():
        raise ModelError(f"{name}: onnx file {path} does not exist")
    return device, half, batch, path


class TorchNudeNet:
    """NudeNet 320n through torch; same labels and scores as `NudeNetClassifier`."""

    labels = NUDENET_LABELS

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "nudenet-torch") -> None:
        device, half, self._batch_size, path = _options(name, options)
        if path is None:
            from classifiers._common import package_file

            path = package_file("nudenet", "320n.onnx")
        self.info = ModelInfo(name=name, version=weights_digest([path]))
        self._net = _Converted(name, path, device, half)

    def classify(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        out: list[dict[str, float]] = []
        for start in range(0, len(images), self._batch_size):
            chunk = [check_rgb(img) for img in images[start : start + self._batch_size]]
            blobs = [_preprocess(img) for img in chunk]
            raw = self._net(np.stack([b for b, _ in blobs]))
            for j, (img, (_blob, side)) in enumerate(zip(chunk, blobs, strict=True)):
                out.append(NudeNetClassifier._scores(_postprocess(raw[j], side, img.shape[1], img.shape[0])))
        return out


class TorchOpenNsfw:
    """open_nsfw through torch; same labels and scores as `OpenNsfwClassifier` (with its JPEG
    re-encode of the crop, which matches the reference scores)."""

    labels = ("nsfw", "sfw")

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "opennsfw-torch") -> None:
        device, half, self._batch_size, path = _options(name, options)
        path = path if path is not None else Path(_weights_path())
        self.info = ModelInfo(name=name, version=weights_digest([path]))
        self._net = _Converted(name, path, device, half)

    def classify(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        results: list[dict[str, float]] = []
        for start in range(0, len(images), self._batch_size):
            chunk = images[start : start + self._batch_size]
            probs = self._net(np.stack([preprocess(img) for img in chunk]))
            for sfw, nsfw in np.asarray(probs, dtype=np.float64):
                results.append({"nsfw": float(np.clip(nsfw, 0.0, 1.0)), "sfw": float(np.clip(sfw, 0.0, 1.0))})
        return results
