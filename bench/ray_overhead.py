"""Why: on Ray Serve every model call also pays for the trip — the gateway's HTTP client, the Serve
proxy, the replica's request handling, Ray's own processes — and on a machine with few cores that
CPU competes with the models themselves. `bench/load.py` says how much CPU a whole request costs per
role; this says what one model call costs and how much of it is the model: each model the default
policy uses (open_nsfw, NudeNet with its face boxes, dlib, and PDQ, which stays in the gateway by
default) is called N times directly in this process (the baseline of the same run) and N times
through Ray Serve, one call at a time, on the same real images (astronaut, coffee; 512²).

Per call it prints the wall time, the CPU of the direct call, and through Serve: the model's own CPU
(the thread time of the replica's batch runs, from the deployment's `info` stats), the replica's CPU
beyond it (Serve's request handling), the proxy's, the rest of the cluster's (controller, raylet,
GCS, agents) and this process's (the gateway side: framing, HTTP); the cluster's roles are counted
beyond their idle CPU over the same wall time, which is printed last (what the cluster costs with no
traffic at all, per second). Each family runs one replica, so its stats are its own.

    .venv/bin/python bench/ray_overhead.py            # 40 calls per model
    .venv/bin/python bench/ray_overhead.py --n 100 --models opennsfw,dlib
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifiers import builtin_registry  # noqa: E402

# (family, adapter, the call the pipeline makes)
MODELS: dict[str, tuple[str, Callable[[Any, np.ndarray], Any]]] = {
    "opennsfw": ("nsfw", lambda m, img: m.classify([img])),
    "nudenet": ("nsfw", lambda m, img: m.classify_with_faces([img])),
    "dlib": ("face", lambda m, img: m.analyze(img)),
    "pdq": ("hash", lambda m, img: m.hashes(img)),
}


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def images() -> list[np.ndarray]:
    import skimage.data

    return [np.ascontiguousarray(skimage.data.astronaut()), np.ascontiguousarray(skimage.data.coffee()[:, :512])]


def workers(names: list[str]) -> dict[str, Any]:
    """One replica per family (its `info` stats are then the whole family's), one model thread each."""
    families: dict[str, Any] = {}
    for name in names:
        family = MODELS[name][0]
        fam = families.setdefault(family, {"models": [], "replicas": 1, "num_cpus": 0.5, "max_batch_size": 8,
                                           "batch_wait_timeout_s": 0.002})
        fam["models"].append({"adapter": name})
    return {"families": families}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40, help="calls per model and path (default 40)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
    parser.add_argument("--idle-s", type=float, default=5.0, help="seconds of no traffic to measure the idle cost")
    args = parser.parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    from classifiers.rayserve import ServeClient, remote_registry
    from classifiers.rayserve.cluster import LocalCluster

    imgs = images()
    registry = builtin_registry()
    print(f"load average at start {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores); {args.n} calls per model and path,"
          f" one at a time, images: astronaut, coffee (512²)")
    direct: dict[str, tuple[float, float]] = {}
    for name in names:
        family, call = MODELS[name]
        model = registry.create(family, name, {"threads": 1} if registry.describe(family, name).takes_threads else {})
        for img in imgs:
            call(model, img)  # warm-up at these shapes
        c0, w0 = own_cpu(), time.perf_counter()
        for k in range(args.n):
            call(model, imgs[k % len(imgs)])
        direct[name] = ((time.perf_counter() - w0) / args.n, (own_cpu() - c0) / args.n)
    with LocalCluster(num_cpus=os.cpu_count() or 2) as cluster:
        cluster.deploy(workers(names))
        client = ServeClient(cluster.serve_url, timeout_s=120)
        remote_reg = remote_registry(registry, client, {MODELS[n][0] for n in names})
        remote = {n: remote_reg.create(MODELS[n][0], n, {}) for n in names}
        for name in names:
            for img in imgs:
                MODELS[name][1](remote[name], img)
        time.sleep(1.0)
        idle0 = cluster.cpu_by_role()
        time.sleep(args.idle_s)
        idle1 = cluster.cpu_by_role()
        idle_rate = {k: (idle1[k] - idle0.get(k, 0.0)) / args.idle_s for k in idle1}  # CPU s per s
        print(f"\n{'model':9} {'path':6} {'wall ms':>8} {'cpu ms':>7} {'model':>6} {'replica+':>9} {'proxy':>6} "
              f"{'ray other':>9} {'gateway':>8} {'trip cpu / model cpu':>21}")
        for name in names:
            family, call = MODELS[name]
            wall, cpu = direct[name]
            print(f"{name:9} {'direct':6} {wall * 1000:>8.1f} {cpu * 1000:>7.1f}")
            s0, r0, c0, w0 = client.info(family)["stats"], cluster.cpu_by_role(), own_cpu(), time.perf_counter()
            for k in range(args.n):
                call(remote[name], imgs[k % len(imgs)])
            wall = time.perf_counter() - w0
            s1, r1, c1 = client.info(family)["stats"], cluster.cpu_by_role(), own_cpu()
            # CPU beyond what each role burns idle in the same wall time (on a loaded machine a call
            # takes longer, and the idle polling of every process would otherwise count as its cost)
            per = {k: (r1[k] - r0.get(k, 0.0) - idle_rate.get(k, 0.0) * wall) * 1000 / args.n for k in r1}
            model = (s1["model_cpu_s"] - s0["model_cpu_s"]) * 1000 / args.n
            replica = per.get(f"ServeReplica:{family}", 0.0) - model
            proxy = per.get("ProxyActor", 0.0)
            other = sum(v for k, v in per.items() if k not in (f"ServeReplica:{family}", "ProxyActor"))
            gateway = (c1 - c0) * 1000 / args.n
            total = model + replica + proxy + other + gateway
            print(f"{'':9} {'serve':6} {wall * 1000 / args.n:>8.1f} {total:>7.1f} {model:>6.1f} {replica:>9.1f} "
                  f"{proxy:>6.1f} {other:>9.1f} {gateway:>8.1f} {total / model if model else float('nan'):>21.2f}")
        idle = {k: v * 1000 for k, v in idle_rate.items()}
        busy = ", ".join(f"{k} {v:.0f}" for k, v in sorted(idle.items(), key=lambda kv: -kv[1]) if v >= 1)
        print(f"\nidle cluster, no traffic: {sum(idle.values()):.0f} ms CPU per second ({busy})")
        print(f"load average at end {os.getloadavg()[0]:.2f}")
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
