"""Why: on Ray Serve one deployment per model family (NSFW, face, text, hash, voice) hosts that family's
adapters, built by the same explicit registry as in-process, so a finding made on a worker is the
finding the gateway would have made itself (same adapter, same weights digest). Requests from
every gateway replica meet in the deployment's `@serve.batch` queue: concurrent images for one
model run as one model call (what makes a GPU pay), with the batch size and wait set per
deployment (`user_config`, changeable without restarting replicas).

Each HTTP request carries one wire frame (`wire.py`: raw `.npy` arrays, no JSON numbers) and
names the operation in its last path segment (`/nsfw/classify`, `/face/analyze`, `/face/detect`,
`/face/embed`, `/text/embed`, `/hash/hashes`, `/voice/speech|partials|embed`; `GET /<family>/info`
describes what is hosted). A model error answers 422 with its message (retrying elsewhere would
fail the same way); Serve's own 5xx (a replica that died, a full queue) are what a caller may retry on another replica.

Voice: `embed` clips of concurrent requests meet in one batch and their windows go through the
encoder as one call (the adapter's `embed` takes many clips); `speech` (VAD, per clip) and
`partials` (one clip, already one encoder batch) are queued through the same batcher but run
per clip.

Per-item isolation: items of several requests share a batch; when a batched call raises, the
items are run one by one, so one request's bad image cannot fail another request.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from ray import serve
from ray.serve.deployment import Deployment
from starlette.requests import Request
from starlette.responses import Response

from classifiers.base import DetectedFace, ModelError, NsfwWithFaces, TwoStageFaceAnalyzer
from classifiers.rayserve.wire import CONTENT_TYPE, decode, encode, faces_from_wire, faces_to_wire
from classifiers.registry import builtin_registry

OPS = {"nsfw": ("classify", "classify_faces"), "face": ("analyze", "detect", "embed"), "text": ("embed",),
       "hash": ("hashes",), "voice": ("speech", "partials", "embed")}


@dataclass(frozen=True)
class Item:
    """One unit of batched work: one image (or text) for one model and operation."""

    model: str
    op: str
    payload: Any
    faces: tuple[DetectedFace, ...] = ()


class FamilyModels:
    """The adapters of one family, built from the registry, and how to run a batch of items."""

    def __init__(self, family: str, models: Sequence[dict[str, Any]], num_cpus: float) -> None:
        if family not in OPS:
            raise ModelError(f"family {family!r} cannot run on a worker; servable: {', '.join(OPS)}")
        registry = builtin_registry()
        self.family = family
        self.adapters: dict[str, Any] = {}
        self.declared: dict[str, dict[str, Any]] = {}
        for entry in models:
            name = str(entry["adapter"])
            options = dict(entry.get("options") or {})
            self.declared[name] = dict(options)
            if registry.describe(family, name).takes_threads and "threads" not in options:
                options["threads"] = max(1, math.ceil(num_cpus))  # the replica's CPUs, not the host's
            self.adapters[name] = registry.create(family, name, options)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, model in self.adapters.items():
            row: dict[str, Any] = {"name": model.info.name, "version": model.info.version,
                                   "options": self.declared[name]}
            for attr in ("labels", "embedding_dim", "dim", "bits", "sample_rate", "partial_s", "step_s"):
                if hasattr(model, attr):
                    value = getattr(model, attr)
                    row[attr] = list(value) if isinstance(value, tuple) else value
            row["two_stage"] = isinstance(model, TwoStageFaceAnalyzer)
            row["with_faces"] = isinstance(model, NsfwWithFaces)
            out[name] = row
        return out

    def run(self, items: Sequence[Item]) -> list[Any]:
        """One result (or the exception it raised) per item, same order."""
        results: list[Any] = [None] * len(items)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault((item.model, item.op), []).append(i)
        for (model, op), idx in groups.items():
            fn = self._batch_fn(model, op)
            chunk = [items[i] for i in idx]
            try:
                outs = fn(chunk)
                if len(outs) != len(chunk):
                    raise ModelError(f"{model}: {len(outs)} results for {len(chunk)} inputs")
            except Exception:  # noqa: BLE001 - isolate the failing item (rerun one by one)
                outs = []
                for item in chunk:
                    try:
                        outs.extend(fn([item]))
                    except Exception as exc:  # noqa: BLE001 - returned to its caller only
                        outs.append(exc)
            for i, out in zip(idx, outs, strict=True):
                results[i] = out
        return results

    def _batch_fn(self, model: str, op: str) -> Callable[[Sequence[Item]], list[Any]]:
        adapter = self.adapters[model]
        if op == "classify":
            return lambda items: list(adapter.classify([it.payload for it in items]))
        if op == "classify_faces":  # NudeNet's scores and its FACE_* boxes from the same batched pass
            def with_faces(items: Sequence[Item]) -> list[Any]:
                scores, boxes = adapter.classify_with_faces([it.payload for it in items])
                return [[s, [[list(map(int, b)), float(c)] for b, c in bx]]
                        for s, bx in zip(scores, boxes, strict=True)]
            return with_faces
        if op == "analyze":
            return lambda items: [adapter.analyze(it.payload) for it in items]
        if op == "detect":
            return lambda items: [adapter.detect(it.payload) for it in items]
        if op == "embed" and self.family == "face":
            return lambda items: [adapter.embed(it.payload, list(it.faces)) for it in items]
        if op == "speech":  # voice activity (VAD) is per clip; nothing to batch
            return lambda items: [[[s.start, s.end] for s in adapter.speech(it.payload)] for it in items]
        if op == "partials":  # one clip's windows already go through the encoder as one batch
            return lambda items: [adapter.partials(it.payload) for it in items]
        if op == "embed":  # texts, or voice clips: every clip's windows in one encoder batch
            return lambda items: list(np.asarray(adapter.embed([it.payload for it in items]), dtype=np.float32))
        if op == "hashes":
            return lambda items: [adapter.hashes(it.payload) for it in items]
        raise ModelError(f"{self.family} has no operation {op!r}")


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json")


class FamilyWorker:
    """A replica hosting every model of one family; see the module docstring."""

    def __init__(self, family: str, models: list[dict[str, Any]], num_cpus: float = 1.0) -> None:
        self.models = FamilyModels(family, models, num_cpus)
        self.max_batch_size = 8
        # what the batching achieved, and the CPU seconds the models themselves took (the thread time
        # of the batch runs): the replica's process CPU beyond it is Serve's (request handling, metrics)
        self.stats: dict[str, float] = {"batches": 0, "items": 0, "largest_batch": 0, "model_cpu_s": 0.0}

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        self.max_batch_size = int(user_config.get("max_batch_size", 8))
        batched: Any = self.run_item  # @serve.batch adds the setters to the method
        batched.set_max_batch_size(self.max_batch_size)
        batched.set_batch_wait_timeout_s(float(user_config.get("batch_wait_timeout_s", 0.005)))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def run_item(self, items: list[Item]) -> list[Any]:
        self.stats["batches"] += 1
        self.stats["items"] += len(items)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(items))
        return await asyncio.to_thread(self._run_timed, items)

    def _run_timed(self, items: list[Item]) -> list[Any]:
        start = time.thread_time()
        try:
            return self.models.run(items)
        finally:
            self.stats["model_cpu_s"] += time.thread_time() - start

    async def _one(self, item: Item) -> Any:
        result = await self.run_item(item)
        if isinstance(result, BaseException):
            raise result
        return result

    async def __call__(self, request: Request) -> Response:
        family = self.models.family
        op = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if request.method == "GET" and op == "info":
            return _json(200, {"family": family, "models": self.models.describe(), "pid": os.getpid(),
                               "max_batch_size": self.max_batch_size, "stats": self.stats})
        if request.method != "POST" or op not in OPS[family]:
            return _json(404, {"error": f"{family} workers answer GET info and POST {', '.join(OPS[family])}"})
        try:
            meta, arrays = decode(await request.body())
            model = str(meta["model"])
            if model not in self.models.adapters:
                return _json(404, {"error": f"{family} model {model!r} is not hosted here; hosted: "
                                            f"{', '.join(sorted(self.models.adapters))}"})
            items = self._items(model, op, meta, arrays)
            results = await asyncio.gather(*(self._one(it) for it in items))
            out_meta, out_arrays = self._reply(model, op, results)
        except (ModelError, KeyError, TypeError, ValueError) as exc:
            return _json(422, {"error": f"{type(exc).__name__}: {exc}"})
        except Exception as exc:  # noqa: BLE001 - a model failure, not the replica's: do not retry it
            return _json(422, {"error": f"{type(exc).__name__}: {exc}"})
        return Response(encode(out_meta, out_arrays), media_type=CONTENT_TYPE)

    def _items(self, model: str, op: str, meta: dict[str, Any], arrays: list[np.ndarray]) -> list[Item]:
        if op == "embed" and self.models.family == "text":
            return [Item(model, op, str(t)) for t in meta["texts"]]
        if op == "embed" and self.models.family == "face":
            (faces,) = faces_from_wire([meta["faces"]], arrays[1:])
            return [Item(model, op, arrays[0], tuple(faces))]
        return [Item(model, op, arr) for arr in arrays]

    def _reply(self, model: str, op: str, results: list[Any]) -> tuple[Any, list[np.ndarray]]:
        if op in ("analyze", "detect", "embed") and self.models.family == "face":
            dim = int(getattr(self.models.adapters[model], "embedding_dim", 0))
            return faces_to_wire(results, dim)
        if op == "partials":
            ((starts, rows),) = results
            return None, [np.asarray(starts, dtype=np.float64), np.asarray(rows, dtype=np.float32)]
        if op == "embed":
            dim = int(self.models.adapters[model].dim)
            return None, [np.stack(results).astype(np.float32) if results else np.zeros((0, dim), np.float32)]
        return results, []


FamilyWorkerDeployment = cast(Deployment, serve.deployment(FamilyWorker))


def build(args: dict[str, Any]) -> Any:
    """Serve application builder (`import_path: classifiers.rayserve.worker:build`): `args` is
    `FamilyConfig.args()` — the family, its models and the deployment options."""
    deployment = dict(args.get("deployment") or {})
    num_cpus = float(deployment.get("ray_actor_options", {}).get("num_cpus", 1.0))
    return FamilyWorkerDeployment.options(**deployment).bind(str(args["family"]), list(args["models"]), num_cpus)
