"""Why: a GPU pays only when images are batched, and across a fleet the batches must be formed from
many callers' single images — which is what Ray Serve's `@serve.batch` does. `bench/gpu_models.py
--ray` calls this: the adapter under test is deployed as the nsfw family on a local cluster (GPU
resources when the device is CUDA), then for each batch size B, B concurrent callers send one
frame per request; the images/s are printed beside the direct call of the same adapter on a batch
of B in this process (the baseline, same run), with the ratio and the batch sizes Serve formed.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import numpy as np


def _direct(model: Any, frames: list[np.ndarray], batch: int, total: int) -> float:
    model.classify(frames[:batch])  # warm-up at this shape
    done, start = 0, time.perf_counter()
    while done < total:
        take = [frames[(done + i) % len(frames)] for i in range(batch)]
        model.classify(take)
        done += batch
    return done / (time.perf_counter() - start)


def _through_serve(model: Any, frames: list[np.ndarray], callers: int, total: int) -> float:
    per = max(1, total // callers)
    barrier = threading.Barrier(callers + 1)
    errors: list[BaseException] = []

    def caller(k: int) -> None:
        barrier.wait()
        try:
            for j in range(per):
                model.classify([frames[(k * per + j) % len(frames)]])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(callers)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} Serve calls failed: {errors[0]}")
    return per * callers / elapsed


def ray_serve_table(registry: Any, frames: list[np.ndarray], args: argparse.Namespace, *, gpu: bool) -> None:
    import os

    from classifiers.rayserve import ServeClient, remote_registry
    from classifiers.rayserve.cluster import LocalCluster

    batches = [int(b) for b in args.ray_batches.split(",")]
    options: dict[str, Any] = {}
    if args.ray_model.endswith("-torch"):
        options = {"device": args.device, "batch_size": max(batches)}
    else:
        options = {"threads": max(1, (os.cpu_count() or 2) - 1)}
    direct = registry.create("nsfw", args.ray_model, options)
    workers = {"families": {"nsfw": {
        "models": [{"adapter": args.ray_model, "options": options}],
        "replicas": 1, "num_cpus": 1, "num_gpus": 1 if gpu and args.device != "cpu" else 0,
        "max_batch_size": max(batches), "batch_wait_timeout_s": args.ray_wait_s,
        "max_ongoing_requests": 2 * max(batches), "max_queued_requests": -1,
    }}}
    cpus = os.cpu_count() or 2
    where = "1 GPU" if workers["families"]["nsfw"]["num_gpus"] else "CPU"
    print(f"\n== through Ray Serve: {args.ray_model} ({direct.info.version}), 1 replica, "
          f"{where}, batch wait {args.ray_wait_s * 1000:.0f} ms; "
          f"baseline: the direct call on a batch of B in this process")
    with LocalCluster(num_cpus=cpus, object_store_mb=512) as cluster:
        start = time.perf_counter()
        cluster.deploy(workers)
        print(f"cluster + deploy: {time.perf_counter() - start:.1f} s")
        client = ServeClient(cluster.serve_url, timeout_s=300, fanout=4)
        remote = remote_registry(registry, client, ["nsfw"]).nsfw(args.ray_model, options)
        print(f"{'B':>5} {'direct img/s':>13} {'Ray Serve img/s':>16} {'ratio':>7} {'batches formed (mean)':>22}")
        for batch in batches:
            total = max(len(frames), 4 * batch)
            d = _direct(direct, frames, batch, total)
            before = client.info("nsfw")["stats"]
            r = _through_serve(remote, frames, batch, total)
            after = client.info("nsfw")["stats"]
            made = max(1, after["batches"] - before["batches"])
            mean = (after["items"] - before["items"]) / made
            print(f"{batch:>5} {d:>13.1f} {r:>16.1f} {r / d:>7.2f} {mean:>22.1f}")
        client.close()
