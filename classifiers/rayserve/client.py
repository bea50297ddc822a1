"""Why: with `CONSENTGATE_MODEL_BACKEND=ray` the gateway builds the same adapters by the same names,
but each one sends its work to the family's Ray Serve deployment instead of running the model in
the gateway's process (where dlib holds the GIL and every replica loads every model). The remote
adapters implement the very Protocols of `classifiers.base`, so the pipeline, `decide()` and the
audit record do not change, and the contract tests run against them unchanged.

Transport: HTTP to the Serve proxy, each body one wire frame (raw `.npy` arrays). The gateway is
deliberately *not* a Ray driver: a driver process exits about a minute after it loses the Ray head
(measured with Ray 2.60), and it must run on a Ray node, which a gateway pod on Kubernetes is not.
Over HTTP a lost cluster is only a refused connection: the call fails, the check denies, /readyz
says 503, and the gateway recovers by itself when the cluster returns.

Fail closed: a Serve-side failure (a replica that died mid-request: 500; no replica or a full
queue: 503; a dropped connection) is retried once — Serve's router has by then dropped the dead
replica, so the retry lands on another one — and otherwise raises `RemoteModelError` naming the
family, the model and what happened; the pipeline turns it into a deny. A model error (bad input)
is not retried. Large calls (a video's sampled frames) are cut into chunks of the deployment's
batch size and sent concurrently, so they spread over replicas and fill their batches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx
import numpy as np

from classifiers._common import check_rgb
from classifiers.base import DetectedFace, ModelError, ModelInfo, SpeechSegment
from classifiers.rayserve.config import SERVABLE, comparable_options
from classifiers.rayserve.wire import CONTENT_TYPE, decode, encode, faces_from_wire, faces_to_wire
from classifiers.registry import ModelRegistry

# Observer of every round trip: (family, op, seconds, outcome) with outcome "ok", "retried",
# "model_error" or "failed" — the gateway hangs a Prometheus histogram on it.
CallObserver = Callable[[str, str, float, str], None]
_RETRY_STATUS = frozenset({500, 502, 503, 504})


class RemoteModelError(ModelError):
    """A model call on Ray Serve failed (after its one retry where the failure allowed one)."""


class ServeClient:
    """HTTP client of the Serve proxy (thread-safe; one per gateway process)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 2.0,
        fanout: int = 8,
        observer: CallObserver | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ModelError(f"Ray Serve address must be an http(s) URL, not {url!r}")
        self.url = url.rstrip("/")
        self.observer = observer
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            transport=transport,
        )
        self._fanout = ThreadPoolExecutor(max_workers=fanout, thread_name_prefix="cg-ray-fanout")
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()
        self._fanout.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    # -- discovery and health -------------------------------------------------------------------

    def info(self, family: str, *, timeout_s: float | None = None) -> dict[str, Any]:
        """What the family's deployment hosts: {"models": {name: {name, version, options, ...}}, ...}."""
        try:
            resp = self._http.get(f"{self.url}/{family}/info", timeout=timeout_s or httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            raise RemoteModelError(f"Ray Serve at {self.url} is unreachable ({type(exc).__name__}: {exc})") from exc
        if resp.status_code == 404:
            raise RemoteModelError(f"no {family} deployment on Ray Serve at {self.url} (HTTP 404)")
        if resp.status_code != 200:
            raise RemoteModelError(f"{family} deployment on Ray Serve at {self.url}: HTTP {resp.status_code} "
                                   f"{resp.text[:200]}")
        body: dict[str, Any] = resp.json()
        return body

    def problems(self, families: Iterable[str], *, timeout_s: float = 2.0) -> list[str]:
        """Empty when every family answers its `info` (a live replica); else one line per family."""
        out = []
        for family in sorted(set(families)):
            try:
                self.info(family, timeout_s=timeout_s)
            except ModelError as exc:
                out.append(f"{family}: {exc}")
        return out

    # -- calls ------------------------------------------------------------------------------------

    def call(
        self, family: str, op: str, model: str, meta: dict[str, Any], arrays: Sequence[np.ndarray]
    ) -> tuple[Any, list[np.ndarray]]:
        body = encode({**meta, "model": model}, arrays)
        url = f"{self.url}/{family}/{op}"
        start = time.perf_counter()
        last = ""
        for attempt in (0, 1):
            try:
                resp = self._http.post(url, content=body, headers={"content-type": CONTENT_TYPE})
            except (httpx.TimeoutException, httpx.InvalidURL) as exc:
                last = f"{type(exc).__name__}: {exc}"
                break  # slow, not broken: a retry would only double the wait
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__}: {exc})"
                continue
            if resp.status_code == 200:
                self._observe(family, op, start, "ok" if attempt == 0 else "retried")
                return decode(resp.content)
            if resp.status_code in _RETRY_STATUS:
                last = f"HTTP {resp.status_code} from the Serve proxy ({_detail(resp)})"
                continue
            self._observe(family, op, start, "model_error")
            raise RemoteModelError(f"{family} model {model!r} on Ray Serve: {_detail(resp)}")
        self._observe(family, op, start, "failed")
        raise RemoteModelError(f"{family} model {model!r} on Ray Serve at {self.url} failed after one retry: {last}")

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` on the client's fan-out threads (a Future)."""
        return self._fanout.submit(fn, *args)

    def map_chunks(
        self, fn: Callable[[Sequence[Any]], list[Any]], items: Sequence[Any], chunk: int
    ) -> list[Any]:
        """fn over `items` cut into chunks of `chunk`, the chunks sent concurrently, results in order."""
        if len(items) <= chunk:
            return fn(items)
        parts = [items[i : i + chunk] for i in range(0, len(items), chunk)]
        out: list[Any] = []
        for result in self._fanout.map(fn, parts):
            out.extend(result)
        return out

    def _observe(self, family: str, op: str, start: float, outcome: str) -> None:
        if self.observer is not None:
            self.observer(family, op, time.perf_counter() - start, outcome)


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("error", resp.text[:300]))
    except ValueError:
        return resp.text[:300].strip() or f"HTTP {resp.status_code}"


# -- remote adapters (the classifiers Protocols) ---------------------------------------------------


class _Remote:
    family = ""
    remote = True  # its calls may run concurrently: they spread over the deployment's replicas

    def __init__(self, client: ServeClient, row: Mapping[str, Any], chunk: int) -> None:
        self._client = client
        self._model = str(row["name"])
        self.info = ModelInfo(name=str(row["name"]), version=str(row["version"]))
        self._chunk = max(1, chunk)

    def _call(self, op: str, meta: dict[str, Any], arrays: Sequence[np.ndarray]) -> tuple[Any, list[np.ndarray]]:
        return self._client.call(self.family, op, self._model, meta, arrays)


class RemoteNsfw(_Remote):
    family = "nsfw"

    def __init__(self, client: ServeClient, row: Mapping[str, Any], chunk: int) -> None:
        super().__init__(client, row, chunk)
        self.labels: tuple[str, ...] = tuple(row["labels"])

    def classify(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        checked = [check_rgb(img) for img in images]
        if not checked:
            return []
        return self._client.map_chunks(self._classify, checked, self._chunk)

    def _classify(self, images: Sequence[np.ndarray]) -> list[dict[str, float]]:
        meta, _ = self._call("classify", {}, images)
        if not isinstance(meta, list) or len(meta) != len(images):
            raise RemoteModelError(f"nsfw model {self._model!r}: malformed answer")
        return [{str(k): float(v) for k, v in scores.items()} for scores in meta]


class RemoteNsfwWithFaces(RemoteNsfw):
    """An NSFW model that also locates faces (NudeNet): scores and face boxes from one worker pass."""

    def classify_with_faces(
        self, images: Sequence[np.ndarray]
    ) -> tuple[list[dict[str, float]], list[list[tuple[tuple[int, int, int, int], float]]]]:
        checked = [check_rgb(img) for img in images]
        if not checked:
            return [], []
        pairs = self._client.map_chunks(self._with_faces, checked, self._chunk)
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def _with_faces(self, images: Sequence[np.ndarray]) -> list[Any]:
        meta, _ = self._call("classify_faces", {}, images)
        if not isinstance(meta, list) or len(meta) != len(images):
            raise RemoteModelError(f"nsfw model {self._model!r}: malformed answer")
        out = []
        for scores, boxes in meta:
            out.append(({str(k): float(v) for k, v in scores.items()},
                        [((int(b[0]), int(b[1]), int(b[2]), int(b[3])), float(c)) for b, c in boxes]))
        return out


class RemoteFace(_Remote):
    family = "face"

    def __init__(self, client: ServeClient, row: Mapping[str, Any], chunk: int) -> None:
        super().__init__(client, row, chunk)
        self.embedding_dim = int(row["embedding_dim"])

    def analyze(self, image: np.ndarray) -> list[DetectedFace]:
        return self._faces("analyze", {}, [check_rgb(image)])

    def _faces(self, op: str, meta: dict[str, Any], arrays: Sequence[np.ndarray]) -> list[DetectedFace]:
        out_meta, out_arrays = self._call(op, meta, arrays)
        (faces,) = faces_from_wire(out_meta, out_arrays)
        return faces


    def prefetching(self) -> PrefetchingFace:
        """A view of this analyzer for one video pass (see `PrefetchingFace`)."""
        return PrefetchingFace(self, self._client)


class PrefetchingFace:
    """For a video pass: `prime(frames)` sends a batch of sampled frames' face calls at once (they
    spread over the face replicas and meet in their @serve.batch queues), and the pass's own calls,
    made one frame at a time and in order (tracking needs the order), find their answers ready.
    A frame that was not primed is sent when asked for."""

    def __init__(self, inner: RemoteFace, client: ServeClient) -> None:
        self.inner = inner
        self.info = inner.info
        self.embedding_dim = inner.embedding_dim
        self._client = client
        self._op = "detect" if isinstance(inner, RemoteTwoStageFace) else "analyze"
        self._pending: list[tuple[np.ndarray, Any]] = []

    def prime(self, images: Sequence[np.ndarray]) -> None:
        fn = getattr(self.inner, self._op)
        self._pending = [(img, self._client.submit(fn, img)) for img in images]

    def _take(self, op: str, image: np.ndarray) -> list[DetectedFace]:
        if op == self._op:
            for i, (img, future) in enumerate(self._pending):
                if img is image:
                    del self._pending[i]
                    result: list[DetectedFace] = future.result()
                    return result
        out: list[DetectedFace] = getattr(self.inner, op)(image)
        return out

    def analyze(self, image: np.ndarray) -> list[DetectedFace]:
        return self._take("analyze", image)


class PrefetchingTwoStageFace(PrefetchingFace):
    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        return self._take("detect", image)

    def embed(self, image: np.ndarray, faces: Sequence[DetectedFace]) -> list[DetectedFace]:
        assert isinstance(self.inner, RemoteTwoStageFace)
        return self.inner.embed(image, faces)


class RemoteTwoStageFace(RemoteFace):
    """A remote face analyzer whose deployment says its adapter detects and embeds apart."""

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        return self._faces("detect", {}, [check_rgb(image)])

    def embed(self, image: np.ndarray, faces: Sequence[DetectedFace]) -> list[DetectedFace]:
        if not faces:
            return []
        (listed,), arrays = faces_to_wire([faces], self.embedding_dim)
        return self._faces("embed", {"faces": listed}, [check_rgb(image), *arrays])

    def prefetching(self) -> PrefetchingFace:
        return PrefetchingTwoStageFace(self, self._client)


class RemoteText(_Remote):
    family = "text"

    def __init__(self, client: ServeClient, row: Mapping[str, Any], chunk: int) -> None:
        super().__init__(client, row, chunk)
        self.dim = int(row["dim"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = self._client.map_chunks(self._embed, list(texts), self._chunk)
        return np.stack(rows).astype(np.float32, copy=False)

    def _embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        _, arrays = self._call("embed", {"texts": [str(t) for t in texts]}, [])
        if len(arrays) != 1 or arrays[0].shape != (len(texts), self.dim):
            raise RemoteModelError(f"text model {self._model!r}: malformed answer")
        return list(arrays[0])


class RemoteHasher(_Remote):
    family = "hash"

    def __init__(self, client: ServeClient, row: Mapping[str, Any], chunk: int) -> None:
        super().__init__(client, row, chunk)
        self.bits = int(row["bits"])

    def hashes(self, image: np.ndarray) -> list[str]:
        meta, _ = self._call("hashes", {}, [check_rgb(image)])
        return [str(h) for h in meta[0]]


class RemoteVoice(_Remote):
    """Voice activity, windowed and per-clip speaker embeddings (family "voice"). `embed` sends
    its clips in chunks of the deployment's batch size, concurrently, so clips of many requests
    share one encoder batch on a worker; `speech` and `partials` send one clip."""

    family = "voice"

    def __init__(self, client: ServeClient, row: Mapping[str, Any], chunk: int) -> None:
        super().__init__(client, row, chunk)
        self.dim = int(row["dim"])
        self.sample_rate = int(row["sample_rate"])
        self.partial_s = float(row["partial_s"])
        self.step_s = float(row["step_s"])

    def speech(self, samples: np.ndarray) -> list[SpeechSegment]:
        meta, _ = self._call("speech", {}, [_pcm(samples)])
        if not isinstance(meta, list) or len(meta) != 1:
            raise RemoteModelError(f"voice model {self._model!r}: malformed answer")
        return [SpeechSegment(float(a), float(b)) for a, b in meta[0]]

    def partials(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, arrays = self._call("partials", {}, [_pcm(samples)])
        if len(arrays) != 2 or arrays[1].shape != (len(arrays[0]), self.dim):
            raise RemoteModelError(f"voice model {self._model!r}: malformed answer")
        return arrays[0].astype(np.float64, copy=False), arrays[1].astype(np.float32, copy=False)

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        checked = [_pcm(clip) for clip in clips]
        if not checked:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = self._client.map_chunks(self._embed, checked, self._chunk)
        return np.stack(rows).astype(np.float32, copy=False)

    def _embed(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        _, arrays = self._call("embed", {}, clips)
        if len(arrays) != 1 or arrays[0].shape != (len(clips), self.dim):
            raise RemoteModelError(f"voice model {self._model!r}: malformed answer")
        return list(arrays[0])


def _pcm(samples: np.ndarray) -> np.ndarray:
    """The adapters' own input rule (mono float32), checked before the round trip."""
    if not isinstance(samples, np.ndarray) or samples.ndim != 1 or samples.dtype != np.float32:
        raise ModelError(f"expected mono float32 samples of shape (n,), got "
                         f"{getattr(samples, 'dtype', type(samples).__name__)} {getattr(samples, 'shape', None)}")
    return np.ascontiguousarray(samples)


# -- the registry the gateway's model pool uses with the ray backend -------------------------------


def remote_adapter(client: ServeClient, family: str, name: str, options: Mapping[str, Any]) -> Any:
    """The remote adapter for (family, name); ModelError when the deployment does not host it or
    hosts it with options that change its answers."""
    info = client.info(family)
    hosted: dict[str, Any] = info.get("models", {})
    row = hosted.get(name)
    if row is None:
        raise RemoteModelError(f"{family} model {name!r} is not deployed on Ray Serve at {client.url}; "
                               f"the {family} deployment hosts: {', '.join(sorted(hosted)) or '(none)'}")
    wanted, deployed = comparable_options(options), comparable_options(row.get("options", {}))
    if wanted != deployed:
        raise RemoteModelError(f"{family} model {name!r}: the policy asks for options {wanted}, the Ray deployment "
                               f"runs it with {deployed} (runtime options {sorted(_runtime(options))} may differ)")
    chunk = int(info.get("max_batch_size", 8))
    if family == "nsfw":
        return (RemoteNsfwWithFaces if row.get("with_faces") else RemoteNsfw)(client, row, chunk)
    if family == "face":
        return (RemoteTwoStageFace if row.get("two_stage") else RemoteFace)(client, row, chunk)
    if family == "text":
        return RemoteText(client, row, chunk)
    if family == "hash":
        return RemoteHasher(client, row, chunk)
    if family == "voice":
        return RemoteVoice(client, row, chunk)
    raise RemoteModelError(f"family {family!r} has no remote adapter")


def _runtime(options: Mapping[str, Any]) -> set[str]:
    return set(options) - set(comparable_options(options))


def remote_registry(base: ModelRegistry, client: ServeClient, families: Iterable[str]) -> ModelRegistry:
    """A registry with the same names as `base`; adapters of `families` are remote, the others
    stay `base`'s (built in-process)."""
    remote = set(families)
    unknown = sorted(remote - set(SERVABLE))
    if unknown:
        raise ModelError(f"families {unknown} cannot run on Ray; servable: {', '.join(SERVABLE)}")
    registry = ModelRegistry()
    for spec in base.adapters():
        if spec.family in remote:
            factory: Callable[[Mapping[str, Any]], Any] = partial(remote_adapter, client, spec.family, spec.name)
            registry.register(spec.family, spec.name, factory, weights=spec.weights, extra=spec.extra)
        else:
            registry.register(spec.family, spec.name, partial(base.create, spec.family, spec.name),
                              weights=spec.weights, extra=spec.extra, takes_threads=spec.takes_threads)
    return registry
