"""Why: every adapter needs the same three chores — find a weights file inside an installed
package without importing it, digest that file into a `model_version`, and read typed options
strictly (a typo in a policy's model options must fail loudly, not fall back to a default).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np

from classifiers.base import ModelError

T = TypeVar("T")


def package_file(package: str, *relative: str) -> Path:
    """Path of a file shipped inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {package!r} is not installed (needed for its model weights)")
    path = Path(next(iter(spec.submodule_search_locations)), *relative)
    if not path.is_file():
        raise ModelError(f"weights file {path} is missing from package {package!r}")
    return path


def weights_digest(paths: Iterable[Path]) -> str:
    """First 16 hex of sha256 over the files' bytes (in the order given)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fp:
            for chunk in iter(lambda: fp.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


class Options:
    """Typed, strict reader over an adapter's options mapping."""

    def __init__(self, adapter: str, options: Mapping[str, Any] | None, allowed: Iterable[str]) -> None:
        self._adapter = adapter
        self._options = dict(options or {})
        unknown = sorted(set(self._options) - set(allowed))
        if unknown:
            raise ModelError(f"adapter {adapter!r}: unknown option(s) {unknown}; allowed: {sorted(allowed)}")

    def get(self, key: str, default: T, kind: type | tuple[type, ...] | None = None) -> T:
        value = self._options.get(key, default)
        expected = kind if kind is not None else type(default)
        if isinstance(value, bool) and expected in (int, float, (int, float)):
            raise ModelError(f"adapter {self._adapter!r}: option {key!r} must be a number, got bool")
        if expected is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, expected):
            raise ModelError(
                f"adapter {self._adapter!r}: option {key!r} has type {type(value).__name__},"
                f" expected {getattr(expected, '__name__', expected)}"
            )
        return cast(T, value)

    def choice(self, key: str, default: str, choices: Iterable[str]) -> str:
        value = self.get(key, default, str)
        allowed = tuple(choices)
        if value not in allowed:
            raise ModelError(f"adapter {self._adapter!r}: option {key!r}={value!r} not in {allowed}")
        return value

    def positive_int(self, key: str, default: int, minimum: int = 1) -> int:
        value = self.get(key, default, int)
        if value < minimum:
            raise ModelError(f"adapter {self._adapter!r}: option {key!r} must be >= {minimum}")
        return value


def check_rgb(image: np.ndarray) -> np.ndarray:
    """Refuse anything but an RGB uint8 (H, W, 3) array; return it C-contiguous."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ModelError(f"expected an RGB uint8 array of shape (H, W, 3), got {dtype} {shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ModelError("empty image")
    return np.ascontiguousarray(image)


def onnx_session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session with a fixed intra-op thread count (sessions are thread-safe)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ModelError(f"onnxruntime is not importable: {exc}") from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if os.environ.get("CONSENTGATE_ORT_SPIN", "0") != "1":
        # Worker threads that spin while idle burn the other core that dlib, the video encoder or a
        # second model needs on a small machine; not spinning costs a little single-call latency.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"cannot load ONNX model {path}: {exc}") from exc


def local_model_dir(adapter: str, options: Options, key: str = "model_dir") -> Path:
    """The directory option `key`, which must name an existing local directory: adapters whose
    weights live outside PyPI load only from disk and never reach a model hub."""
    raw = options.get(key, "", (str, Path))
    if not str(raw):
        raise ModelError(
            f"adapter {adapter!r}: option {key!r} (a local directory with the weights) is required"
        )
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise ModelError(f"adapter {adapter!r}: {key} {str(path)!r} is not a directory")
    return path.resolve()


def offline_hub() -> None:
    """Make huggingface_hub / transformers / open_clip refuse network access in this process."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
