"""Why: every adapter needs the same chores — find a weights file inside an installed
package without importing it, digest that file into a `model_version`, read typed options
strictly (a typo in a policy's model options must fail loudly, not fall back to a default), and
know how many cores one call may use right now (`thread_budget`: the caller knows the process's
load, the adapter does the work; a context variable carries it into worker threads without
changing every family's Protocol).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
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


def rgb_rows(image: np.ndarray) -> np.ndarray:
    """`check_rgb` for readers that take strided rows (OpenCV): a tile cut out of a larger image is
    returned as it is, not copied, when each row's pixels are contiguous; otherwise a C-contiguous copy."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        return check_rgb(image)  # raises the same error
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ModelError("empty image")
    if image.strides[2] == 1 and image.strides[1] == 3 and image.strides[0] > 0:
        return image
    return np.ascontiguousarray(image)


def ort_session_options(ort: Any, threads: int) -> Any:
    """The SessionOptions every ONNX Runtime session of the gateway is built with (`onnx_session`,
    classifiers/dlib_resnet.py): a fixed intra-op thread count, no spinning, and the CPU memory arena
    as `CONSENTGATE_ORT_ARENA` says: `off` (default: allocations go through glibc, which the gateway's
    trimmer hands back), `on` (ORT's BFC arena per session: under 8 threads calling with varying batch
    its floor rose in steps, +45 MB over 800 calls, where `off` stayed flat at ~5 % more CPU per call;
    bench/ort_arena.py, docs/deploy.md), `nopattern` (arena, no memory pattern), `shrink` (arena freed
    of unused regions after each run: flat too, ~10 % more CPU)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if os.environ.get("CONSENTGATE_ORT_SPIN", "0") != "1":
        # Worker threads that spin while idle burn the other core that dlib, the video encoder or a
        # second model needs on a small machine; not spinning costs a little single-call latency.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    arena = ort_arena_mode()
    if arena == "off":
        opts.enable_cpu_mem_arena = False
    elif arena == "nopattern":
        opts.enable_mem_pattern = False
    return opts


ORT_ARENA_MODES = ("on", "off", "nopattern", "shrink")


def ort_run_options() -> Any:
    """RunOptions for `session.run`: None, or with "shrink" the arena's unused regions freed after each run."""
    if ort_arena_mode() != "shrink":
        return None
    import onnxruntime as ort

    ro = ort.RunOptions()
    ro.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return ro


def ort_arena_mode() -> str:
    mode = os.environ.get("CONSENTGATE_ORT_ARENA", "off")
    if mode not in ORT_ARENA_MODES:
        raise ModelError(f"CONSENTGATE_ORT_ARENA={mode!r} not in {ORT_ARENA_MODES}")
    return mode


def onnx_session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session with a fixed intra-op thread count (sessions are thread-safe)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ModelError(f"onnxruntime is not importable: {exc}") from exc
    opts = ort_session_options(ort, threads)
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"cannot load ONNX model {path}: {exc}") from exc


_CALL_THREADS: ContextVar[int | None] = ContextVar("consentgate_call_threads", default=None)


@contextmanager
def thread_budget(threads: int) -> Iterator[None]:
    """Within this block (and in worker threads started from it with the context copied, as
    `asyncio.to_thread` does), a model call uses at most `threads` threads of its own. The gateway's
    check sets it per request and stage from the load of the process (gateway/pipeline/parallel.py);
    outside any block an adapter uses what it was configured with. Results never depend on it."""
    if threads < 1:
        raise ValueError(f"a thread budget must be >= 1 (got {threads})")
    token = _CALL_THREADS.set(threads)
    try:
        yield
    finally:
        _CALL_THREADS.reset(token)


def call_threads(configured: int) -> int:
    """The threads the current call may use: the adapter's `configured` count, capped by the
    caller's `thread_budget` when one is set."""
    budget = _CALL_THREADS.get()
    return configured if budget is None else max(1, min(configured, budget))


def budget_set() -> int | None:
    """The caller's thread budget, or None outside any `thread_budget` block."""
    return _CALL_THREADS.get()


class OnnxSessions:
    """One ONNX model with a session per intra-op thread count, picked per call by `call_threads`:
    a check that runs its stages one after another on one thread each (gateway/pipeline/parallel.py)
    gets a one-thread session; otherwise the configured count. The outputs are the same whatever the
    count (tests/classifiers/test_thread_budget.py). Other sessions are made on first use."""

    def __init__(self, path: Path, threads: int) -> None:
        self._path = path
        self._threads = threads
        self._sessions = {threads: onnx_session(path, threads)}
        self._run_options = ort_run_options()  # decided with the sessions, not per call
        self._lock = threading.Lock()

    def get_inputs(self) -> Any:
        return self._sessions[self._threads].get_inputs()

    def session(self) -> Any:
        threads = call_threads(self._threads)
        found = self._sessions.get(threads)
        if found is None:
            with self._lock:
                found = self._sessions.get(threads)
                if found is None:
                    found = self._sessions[threads] = onnx_session(self._path, threads)
        return found

    def run(self, outputs: Any, feeds: Mapping[str, Any]) -> Any:
        return self.session().run(outputs, dict(feeds), self._run_options)


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
