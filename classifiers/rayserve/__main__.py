"""Why: the model workers are deployed, inspected and torn down from the command line, by people
and by `LocalCluster` (which keeps its caller from becoming a Ray driver by running these in a
child process).

    python -m classifiers.rayserve deploy --address 127.0.0.1:6379 --config deploy/ray/models.yaml
    python -m classifiers.rayserve serve-config --config deploy/ray/models.yaml   # RayService serveConfigV2
    python -m classifiers.rayserve local --config deploy/ray/models.yaml --num-cpus 2   # until Ctrl-C
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import yaml

from classifiers.rayserve.cluster import LOOPBACK_ENV
from classifiers.rayserve.config import WorkersConfig, load_config
from classifiers.registry import builtin_registry

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "ray" / "models.yaml"


def serve_config(cfg: WorkersConfig, *, host: str = "0.0.0.0", port: int = 8000) -> dict[str, object]:  # noqa: S104
    """A Serve config file (the `serveConfigV2` of a KubeRay RayService) for these workers."""
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": host, "port": port},
        "applications": cfg.applications(),
    }


def minimum_resources(cfg: WorkersConfig) -> dict[str, float]:
    """CPUs, GPUs and memory (bytes) the workers need at their minimum replica counts."""
    need = {"CPU": 0.0, "GPU": 0.0, "memory": 0.0}
    for fam in cfg.families.values():
        count = fam.replicas if fam.autoscaling is None else max(
            int(fam.autoscaling.get("min_replicas", 1)), int(fam.autoscaling.get("initial_replicas", 0)), 1)
        need["CPU"] += fam.num_cpus * count
        need["GPU"] += fam.num_gpus * count
        need["memory"] += (fam.memory_mb or 0) * 1024 * 1024 * count
    return need


def deploy(cfg: WorkersConfig, address: str, host: str, port: int, *, timeout_s: float = 600.0,
           strict: bool = False) -> None:
    if address.startswith("127.0.0.1") or address.startswith("localhost"):
        for key, value in LOOPBACK_ENV.items():  # before Ray is imported: it reads them at import
            os.environ.setdefault(key, value)
    import ray
    from ray import serve
    from ray.serve.api import RunTarget

    from classifiers.rayserve.worker import build

    ray.init(address=address, namespace="consentgate", log_to_driver=False)
    have = ray.cluster_resources()  # type: ignore[no-untyped-call]
    short = {k: (v, have.get(k, 0.0)) for k, v in minimum_resources(cfg).items() if v > have.get(k, 0.0) + 1e-9}
    if short:
        lines = ", ".join(f"{k} {need:g} > {got:g}" for k, (need, got) in short.items())
        message = f"the workers' minimum replicas need more than the cluster has ({lines})"
        if strict:
            ray.shutdown()
            raise SystemExit(message + "; shrink the workers file or give the cluster more")
        print(f"warning: {message}; replicas wait until an autoscaler adds nodes", file=sys.stderr)
    serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
    targets = [RunTarget(build(app["args"]), name=app["name"], route_prefix=app["route_prefix"])
               for app in cfg.applications()]
    serve.run_many(targets, wait_for_applications_running=False)
    wanted = {app["name"] for app in cfg.applications()}
    deadline = time.monotonic() + timeout_s
    while True:
        apps = {n: a for n, a in serve.status().applications.items() if n in wanted}
        states = {n: str(getattr(a.status, "value", a.status)) for n, a in apps.items()}
        if len(states) == len(wanted) and all(s == "RUNNING" for s in states.values()):
            break
        failed = {n: a for n, a in apps.items() if states[n] in ("DEPLOY_FAILED", "UNHEALTHY")}
        if failed or time.monotonic() > deadline:
            detail = {n: {"status": states[n], "message": a.message,
                          "deployments": {d: f"{v.status}: {v.message}" for d, v in a.deployments.items()}}
                      for n, a in apps.items()}
            ray.shutdown()
            raise SystemExit(f"the workers did not come up ({'failed' if failed else 'timed out'}): "
                             f"{json.dumps(detail, indent=2, default=str)}")
        time.sleep(0.5)
    print(json.dumps(states))
    ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m classifiers.rayserve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    dep = sub.add_parser("deploy", help="deploy (or update) the model workers on a running cluster")
    dep.add_argument("--address", required=True, help="the Ray GCS address, e.g. 127.0.0.1:6379")
    dep.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    dep.add_argument("--http-host", default="127.0.0.1")
    dep.add_argument("--http-port", type=int, default=8000)
    dep.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for every family to run")
    dep.add_argument("--strict-resources", action="store_true",
                     help="refuse to deploy when the cluster cannot hold the minimum replicas (no autoscaler)")
    cfg = sub.add_parser("serve-config", help="print the Serve config (RayService serveConfigV2) as YAML")
    cfg.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    loc = sub.add_parser("local", help="start a local cluster on 127.0.0.1, deploy, wait for Ctrl-C")
    loc.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    loc.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    loc.add_argument("--http-port", type=int, default=0, help="0: a free port")
    args = parser.parse_args(argv)
    workers = load_config(args.config, builtin_registry())
    if args.command == "serve-config":
        sys.stdout.write(yaml.safe_dump(serve_config(workers), sort_keys=False))
        return 0
    if args.command == "deploy":
        deploy(workers, args.address, args.http_host, args.http_port, timeout_s=args.timeout,
               strict=args.strict_resources)
        return 0
    from classifiers.rayserve.cluster import LocalCluster

    cluster = LocalCluster(num_cpus=args.num_cpus, serve_port=args.http_port or None)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        cluster.start()
        cluster.deploy(args.config)
        print(f"model workers ready: CONSENTGATE_RAY_ADDRESS={cluster.serve_url} (Ray at {cluster.address})",
              flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
