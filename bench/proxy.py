"""Proxy benchmark. Why: a team deciding whether to put consentgate in front of its model wants
to know what the gateway adds per image. This sends the same OpenAI images request (same prompt,
size, format) to the reference upstream directly and through the gateway's
`/v1/images/generations` (which calls that upstream), in one run, and prints both latencies and
the difference — the gateway's cost per image: input check, output check (the policy's real
models), watermark, C2PA signing and the audit append.

The upstream runs in its own process (`python -m examples.upstream`), the gateway in this one
(uvicorn in a thread, a temp data dir, the repository's default policy unless --policy is given).
Both are on loopback; requests alternate direct/gateway so drift hits both alike.

Run: ``.venv/bin/python bench/proxy.py [--n 20] [--size 512x512] [--policy policies/default.yaml]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from examples.upstream import ServerThread, free_port  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.settings import Settings  # noqa: E402


def start_upstream(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "examples.upstream", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the reference upstream did not start")


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": 1000 * statistics.median(ordered),
        "p90_ms": 1000 * ordered[int(0.9 * (len(ordered) - 1))],
        "mean_ms": 1000 * statistics.fmean(ordered),
    }


def histogram_sums(registry: Any) -> dict[str, float]:
    """{'stage/models': seconds, 'model/opennsfw': seconds, 'upstream/demo': ...} summed so far."""
    names = {
        "consentgate_stage_seconds": ("stage", "stage"),
        "consentgate_model_seconds": ("model", "model"),
        "consentgate_upstream_seconds": ("upstream", "route"),
    }
    out: dict[str, float] = {}
    for family in registry.collect():
        if family.name not in names:
            continue
        prefix, label = names[family.name]
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                out[f"{prefix}/{sample.labels[label]}"] = sample.value
    return out


def run(n: int, warmup: int, size: str, policy: Path, threads: int) -> dict[str, Any]:
    port = free_port()
    upstream = start_upstream(port)
    tmp = Path(tempfile.mkdtemp(prefix="cg-bench-proxy-"))
    try:
        policies = tmp / "policies"
        policies.mkdir()
        shutil.copy(policy, policies / "default.yaml")
        (policies / "routes.yaml").write_text(
            "limits: {per_key: {rate_per_s: 100000, burst: 100000}}\n"
            "routes:\n  demo:\n    kind: openai-images\n"
            f"    url: http://127.0.0.1:{port}\n    use: txt2img\n"
            "    model: {name: demo-upstream, version: '1'}\n    max_concurrency: 64\n"
        )
        settings = Settings(
            data_dir=tmp / "data", policies_dir=policies, model_threads=threads, audit_checkpoint_every=256
        )
        app = create_app(settings)
        with ServerThread(app) as gateway, httpx.Client(timeout=120) as http:
            key = app.state.gateway.apikeys.create("bench", "generator")[1]
            direct_url = f"http://127.0.0.1:{port}/v1/images/generations"
            via_url = gateway.url + "/v1/images/generations"
            auth = {"Authorization": f"Bearer {key}"}
            direct: list[float] = []
            via: list[float] = []
            registry = app.state.gateway.metrics.registry
            start_sums: dict[str, float] = {}
            for i in range(warmup + n):
                if i == warmup:
                    start_sums = histogram_sums(registry)
                body = {
                    "model": "demo",
                    "prompt": f"benchmark scene {i}",
                    "size": size,
                    "response_format": "b64_json",
                }
                t0 = time.perf_counter()
                r1 = http.post(direct_url, json=body)
                t1 = time.perf_counter()
                r2 = http.post(via_url, json=body, headers=auth)
                t2 = time.perf_counter()
                if r1.status_code != 200 or r2.status_code != 200:
                    raise RuntimeError(f"direct {r1.status_code}, gateway {r2.status_code}: {r2.text[:300]}")
                if i >= warmup:
                    direct.append(t1 - t0)
                    via.append(t2 - t1)
            end_sums = histogram_sums(registry)
        breakdown = {k: 1000 * (v - start_sums.get(k, 0.0)) / n for k, v in sorted(end_sums.items())}
        d, g = summary(direct), summary(via)
        return {
            "n": n,
            "size": size,
            "policy": str(policy),
            "direct": d,
            "gateway": g,
            "cost_per_image_ms": {k: g[k] - d[k] for k in d},
            "ratio_median": g["median_ms"] / d["median_ms"],
            "breakdown_ms_per_request": breakdown,
        }
    finally:
        upstream.terminate()
        upstream.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--size", default="512x512")
    parser.add_argument("--policy", type=Path, default=REPO / "policies" / "default.yaml")
    parser.add_argument("--threads", type=int, default=2, help="model threads of the gateway")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = run(args.n, args.warmup, args.size, args.policy, args.threads)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"proxy round trip, {result['n']} requests of one {result['size']} image, policy {result['policy']}"
    )
    print(f"{'':24}{'median':>10}{'p90':>10}{'mean':>10}  (ms)")
    for label, key in (("direct upstream", "direct"), ("through the gateway", "gateway")):
        s = result[key]
        print(f"{label:24}{s['median_ms']:10.1f}{s['p90_ms']:10.1f}{s['mean_ms']:10.1f}")
    c = result["cost_per_image_ms"]
    print(f"{'gateway cost per image':24}{c['median_ms']:10.1f}{c['p90_ms']:10.1f}{c['mean_ms']:10.1f}")
    print(f"ratio (median): {result['ratio_median']:.2f}x")
    print("where the gateway's time goes (mean ms per request; input + output checks together):")
    for name, ms in result["breakdown_ms_per_request"].items():
        print(f"  {name:30}{ms:8.1f}")


if __name__ == "__main__":
    main()
