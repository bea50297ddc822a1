"""Why: the gateway must hold up under steady concurrent traffic — no errors, no memory growth, and a
shared audit log without gaps or forks when several replicas write it. This is a bounded load test on
loopback: `consentgate serve` replicas as subprocesses (two sharing one fresh PostgreSQL database, or
one on SQLite), N client threads sending /v1/check with small real images (coffee, astronaut) and a
few /v1/release for a fixed time; then throughput, p50/p99 latency and errors per replica, each
replica's RSS at start and end, and `consentgate audit verify` on the shared log.

Mixed requests (`--mix prompt=85,image=10,release=5`): the request kinds interleaved by weight —
`prompt` an input check of a prompt alone (no media: the prompt rules, the name check), `image` an
output check of coffee or the astronaut, `release` a release of coffee (marked and signed) — the
shape of a generation service's traffic (most requests cheap, a share with images). Without
`--mix`: image checks, every `--release-every`-th request a release (the original table).

Memory (issue 21 point 4): each serving process — every gateway replica and, with `--backend ray`,
every Ray Serve model replica (`LocalCluster.replica_pids`) — has its RSS (/proc/<pid>/status
VmRSS) read at idle (ready, no request yet), after the warm-up, and after the N measured requests
(`--requests`, default 10000); the "memory" lines print them with the growth after warm-up, then
each process's anonymous (allocated) and file-backed (libraries, weights) MB, and per gateway replica
a "memory verdict" line: quarter means and floors of the RSS series (every ~10 s) and its trend in
MB per 1k requests with the standard error, over the run and its second half (bench/memtrend.py);
then "C heap" lines from each replica's trims (every 30 s, CONSENTGATE_MALLOC_STATS): the anonymous
memory left after each trim (the floor), and glibc's in-use, free and mmapped bytes before it — growth
in "in use" is live allocations (a leak, or an allocator inside a library keeping regions), in "free"
fragments glibc holds.

    .venv/bin/python bench/load.py                              # both modes, 10k requests each, 8 clients
    .venv/bin/python bench/load.py --mode sqlite --requests 500 --clients 4
    .venv/bin/python bench/load.py --mode sqlite --duration 10 --clients 4    # time-bound instead
    .venv/bin/python bench/load.py --mode pg --clients 16 --json out.json
    .venv/bin/python bench/load.py --backend ray --mode sqlite --scaling 1,4 --duration 30
    --backend inprocess|ray   where the models run: in each gateway process (default), or on Ray Serve
                   deployments (classifiers/rayserve) of a local cluster this script starts and stops,
                   which every replica shares; `ray` runs the in-process backend first, same settings,
                   as the baseline of the same run
    --mix prompt=85,image=10,release=5   request kinds by weight (see above)
    --requests N   measured requests per client count (default 10000); --duration S caps the time
                   (whichever comes first; with --duration alone the run is only time-bound)
    --scaling 1,4  measure each client count in turn on the same replicas and print the throughput
                   ratio of the last to the first (the issue's "4 clients vs 1 client")
    --trace N      instead of the load: one in-process gateway (SQLite, the same mix, --clients threads),
                   tracemalloc snapshots after the warm-up and after N requests; prints RSS and the
                   Python heap at each, and the allocation sites that grew most (where a leak lives)
    --pg-url URL   the server to create (and drop) a fresh database on
                   (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)

Exit status 1 when a request failed, the audit log does not verify, or its size differs from the
number of decisions the clients were answered.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from memtrend import proc_memory, trend

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def cli() -> list[str]:
    script = Path(sys.executable).parent / "consentgate"
    return (
        [str(script)] if script.exists() else [sys.executable, "-c", "from gateway.cli import main; main()"]
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def machine_busy_s() -> float:
    """CPU seconds every core of the machine spent busy (user, nice, system, irq, softirq, steal)
    since boot: with the run's own processes it shows how much other work shared the cores."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process (the client threads and the bench's own loop)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_snapshot(replicas: list[Replica], cluster: Any) -> dict[str, float]:
    """CPU seconds so far by role: each gateway replica, each Ray role (`ServeReplica:face`,
    `ProxyActor`, `raylet`, ...), this process (`client`), and the whole machine (`machine`)."""
    from classifiers.rayserve.cluster import process_cpu_seconds

    out = {"client": own_cpu_s(), "machine": machine_busy_s()}
    for rep in replicas:
        out[f"gateway:{rep.name}"] = process_cpu_seconds(rep.proc.pid) or 0.0
    if cluster is not None:
        for role, cpu in cluster.cpu_by_role().items():
            out[f"ray:{role}"] = cpu
    return out


def cpu_report(before: dict[str, float], after: dict[str, float], requests: int, wall: float) -> dict[str, Any]:
    """CPU per request by role (ms) over one measured run, the cores each used, and the totals:
    `server` = gateways + the Ray cluster, `ours` = server + client, `other` = the rest of the
    machine (other people's work on a shared host)."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    n = max(requests, 1)
    roles = {k: round(v / n * 1000, 1) for k, v in sorted(delta.items()) if k != "machine" and v > 0.005 * wall}
    server = sum(v for k, v in delta.items() if k.startswith(("gateway:", "ray:")))
    ours = server + delta.get("client", 0.0)
    return {
        "ms_per_request": roles,
        "server_ms_per_request": round(server / n * 1000, 1),
        "ours_ms_per_request": round(ours / n * 1000, 1),
        "server_cores": round(server / wall, 2),
        "ours_cores": round(ours / wall, 2),
        "machine_cores": round(delta.get("machine", 0.0) / wall, 2),
        "other_cores": round(max(0.0, delta.get("machine", 0.0) - ours) / wall, 2),
        "cores": os.cpu_count() or 1,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def serving_processes(replicas: list[Replica], cluster: Any) -> dict[str, int]:
    """Every process that serves requests: the gateway replicas, and the Ray Serve model replicas
    of each family when the models run on a local cluster (name -> pid)."""
    out = {rep.name: rep.proc.pid for rep in replicas}
    if cluster is not None:
        for family in ("nsfw", "face", "text", "hash", "voice"):
            for i, pid in enumerate(cluster.replica_pids(family)):
                out[f"ray:{family}#{i}"] = pid
    return out


def images() -> dict[str, bytes]:
    """Small real images that ship inside packages: coffee (no face) and astronaut (a face)."""
    import numpy as np
    import skimage.data
    from PIL import Image

    out = {}
    for name in ("coffee", "astronaut"):
        arr = np.asarray(getattr(skimage.data, name)())
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=85)
        out[name] = buf.getvalue()
    return out


# -- PostgreSQL: a fresh database per run ------------------------------------------------------------


def create_database(base_url: str) -> tuple[str, str]:
    import sqlalchemy as sa

    name = f"cg_load_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return name, base_url.rsplit("/", 1)[0] + "/" + name


def drop_database(base_url: str, name: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


# -- replicas ---------------------------------------------------------------------------------------


@dataclass
class Replica:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_series_mb: list[float] = field(default_factory=list)  # sampled every ~duration/6
    # (requests answered so far, RSS MB, anonymous MB) every ~10 s (by request count) or duration/6
    mem_series: list[tuple[int, float, float]] = field(default_factory=list)


def start_replicas(count: int, data: Path, policies: Path, env: dict[str, str], logs: Path) -> list[Replica]:
    replicas = []
    for i in range(count):
        port = free_port()
        log = logs / f"replica-{i}.log"
        # glibc's heap stats at each of the replica's trims (gateway/app.py `start_malloc_trimmer`)
        rep_env = dict(env, CONSENTGATE_MALLOC_STATS=str(logs / f"replica-{i}-malloc.jsonl"))
        with open(log, "wb") as fh:
            proc = subprocess.Popen(  # noqa: S603 - our own CLI
                [
                    *cli(),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--data-dir",
                    str(data),
                    "--policies",
                    str(policies),
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=rep_env,
                start_new_session=True,
            )
        replicas.append(Replica(f"replica-{i}", f"http://127.0.0.1:{port}", proc, log))
    deadline = time.monotonic() + 300
    for rep in replicas:
        while True:
            if rep.proc.poll() is not None:
                raise RuntimeError(f"{rep.name} exited during startup:\n{rep.log.read_text()[-3000:]}")
            try:
                if httpx.get(rep.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{rep.name} did not become ready")
            time.sleep(0.25)
    return replicas


def stop_replicas(replicas: list[Replica]) -> None:
    for rep in replicas:
        if rep.proc.poll() is None:
            rep.proc.send_signal(signal.SIGTERM)
    for rep in replicas:
        try:
            rep.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            rep.proc.kill()
            rep.proc.wait(timeout=10)


# -- the load ---------------------------------------------------------------------------------------


@dataclass
class Sample:
    replica: str
    kind: str
    status: int  # 0: no HTTP answer
    seconds: float
    decided: bool  # the answer carries a decision (so the log gained one entry)
    error: str | None = None


@dataclass
class Stats:
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)


PROMPTS = (
    "a watercolour of a lighthouse at dusk, soft light",
    "product photo of a ceramic coffee cup on a wooden table",
    "an astronaut riding a horse on the moon, cinematic",
    "a cat sleeping on a windowsill in the afternoon sun",
    "isometric illustration of a small city with trees and a river",
    "portrait of an old fisherman, oil painting, dramatic lighting",
    "deepfake porn of my neighbour",  # a prompt rule denies it (answered 200 on /v1/check)
    "a bowl of ramen with steam rising, food photography",
)


def parse_mix(text: str | None) -> list[str] | None:
    """`prompt=85,image=10,release=5` → one cycle of request kinds, interleaved by weight (smooth
    weighted round robin: release 5 in 100 comes every ~20th request, not in a block)."""
    if not text:
        return None
    weights: dict[str, int] = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        if kind.strip() not in ("prompt", "image", "release"):
            raise SystemExit(f"--mix: unknown kind {kind!r} (prompt, image, release)")
        weights[kind.strip()] = int(weight)
    total = sum(weights.values())
    credit = dict.fromkeys(weights, 0)
    cycle = []
    for _ in range(total):
        for kind in credit:
            credit[kind] += weights[kind]
        best = max(credit, key=lambda k: credit[k])
        credit[best] -= total
        cycle.append(best)
    return cycle


def client_loop(
    idx: int,
    key: str,
    replicas: list[Replica],
    payloads: dict[str, bytes],
    stop: threading.Event,
    stats: Stats,
    release_every: int,
    mix: list[str] | None = None,
    client: Any = None,
) -> None:
    """One client thread; `client` (an in-process TestClient, `--trace`) replaces the HTTP client."""
    names = sorted(payloads)
    auth = {"Authorization": f"Bearer {key}"}
    n = 0
    with contextlib.nullcontext(client) if client is not None else httpx.Client(timeout=120) as http:
        while not stop.is_set():
            rep = replicas[(idx + n) % len(replicas)]
            image = names[(idx + n // len(replicas)) % len(names)]  # every replica sees both images
            if mix is not None:
                kind = mix[(n + idx * 7) % len(mix)]
                kind = "check" if kind == "image" else kind
            else:
                release = release_every > 0 and n % release_every == release_every - 1
                kind = "release" if release else "check"
            files: list[Any] | None = None
            if kind == "release":
                path, request, image = "/v1/release", {"use": "txt2img"}, "coffee"
            elif kind == "prompt":
                path = "/v1/check"
                request = {"stage": "input", "use": "txt2img", "end_user": f"load-{idx}",
                           "prompt": PROMPTS[(idx + n) % len(PROMPTS)]}
            else:
                path, request = "/v1/check", {"stage": "output", "use": "txt2img", "end_user": f"load-{idx}"}
            if kind != "prompt":
                files = [("media", (f"{image}.jpg", payloads[image], "image/jpeg"))]
            start = time.perf_counter()
            try:
                resp = http.post(
                    rep.url + path,
                    headers=auth,
                    data={"request": json.dumps(request)},
                    files=files,
                )
                seconds = time.perf_counter() - start
                ok = resp.status_code == 200
                decided = resp.status_code in (200, 403)
                error = None if ok else f"{resp.status_code}: {resp.text[:200]}"
                stats.add(Sample(rep.name, kind, resp.status_code, seconds, decided, error))
            except httpx.HTTPError as exc:
                stats.add(
                    Sample(rep.name, kind, 0, time.perf_counter() - start, False, f"{type(exc).__name__}")
                )
            n += 1


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summarise(stats: Stats, replicas: list[Replica], duration: float) -> dict[str, Any]:
    out: dict[str, Any] = {"replicas": {}}
    for rep in [*replicas, None]:
        chosen = [s for s in stats.samples if rep is None or s.replica == rep.name]
        lat = [s.seconds * 1000 for s in chosen]
        errors = [s for s in chosen if s.error is not None]
        row = {
            "requests": len(chosen),
            "by_kind": dict(Counter(s.kind for s in chosen)),
            "throughput_rps": round(len(chosen) / duration, 2),
            "p50_ms": round(percentile(lat, 0.50), 1),
            "p99_ms": round(percentile(lat, 0.99), 1),
            "p50_check_ms": round(
                percentile([s.seconds * 1000 for s in chosen if s.kind == "check"], 0.5), 1
            ),
            "p50_release_ms": round(
                percentile([s.seconds * 1000 for s in chosen if s.kind == "release"], 0.5), 1
            ),
            "p50_prompt_ms": round(
                percentile([s.seconds * 1000 for s in chosen if s.kind == "prompt"], 0.5), 1
            ),
            "errors": len(errors),
            "error_examples": sorted({e.error or "" for e in errors})[:5],
        }
        if rep is None:
            out["total"] = row
        else:
            row |= {
                "rss_start_mb": round(rep.rss_start_mb, 1),
                "rss_end_mb": round(rep.rss_end_mb, 1),
                "rss_peak_mb": round(rep.rss_peak_mb, 1),
                "rss_series_mb": rep.rss_series_mb,
                "mem_series": rep.mem_series,
            }
            out["replicas"][rep.name] = row
    out["decisions_answered"] = sum(1 for s in stats.samples if s.decided)
    return out


def run_mode(
    mode: str, args: argparse.Namespace, payloads: dict[str, bytes], backend: str = "inprocess"
) -> list[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix=f"consentgate-load-{mode}-"))
    data = root / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTGATE_")}
    env["ORT_DISABLE_TELEMETRY"] = "1"
    env["CONSENTGATE_MODEL_THREADS"] = str(args.model_threads)
    # the replicas run this checkout's code (not whatever the virtualenv's editable install points at)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    cluster: Any = None
    db_name = None
    if mode == "pg":
        db_name, url = create_database(args.pg_url)
        env["CONSENTGATE_DATABASE_URL"] = url
    count = 2 if mode == "pg" else 1
    replicas: list[Replica] = []
    try:
        if backend == "ray":  # inside the try: the cluster goes away whatever happens
            from classifiers.rayserve.cluster import LocalCluster

            cluster = LocalCluster(num_cpus=args.ray_cpus)
            started = time.monotonic()
            cluster.start()
            cluster.deploy(args.ray_workers)
            print(f"[ray] local cluster ({args.ray_cpus} CPUs) + workers of {args.ray_workers.name}: "
                  f"{time.monotonic() - started:.1f} s", file=sys.stderr)
            env["CONSENTGATE_MODEL_BACKEND"] = "ray"
            env["CONSENTGATE_RAY_ADDRESS"] = cluster.serve_url
        subprocess.run(  # noqa: S603 - our own CLI
            [*cli(), "init", "--data-dir", str(data), "--policies", str(args.policies)],
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        admin = dict(line.split(" ", 1) for line in (data / "first-run-keys.txt").read_text().splitlines())[
            "admin"
        ]
        replicas = start_replicas(count, data, args.policies, env, root)
        procs = serving_processes(replicas, cluster)
        idle = {name: rss_mb(pid) for name, pid in procs.items()}  # ready, not one request yet
        idle_parts = {name: proc_memory(pid) for name, pid in procs.items()}
        keys = []
        for i in range(max(args.client_counts)):
            resp = httpx.post(
                replicas[0].url + "/v1/apikeys",
                headers={"Authorization": f"Bearer {admin}"},
                json={"tenant": f"load{i % 4}", "role": "generator"},
                timeout=60,
            )
            resp.raise_for_status()
            keys.append(resp.json()["key"])
        # Warm up every replica (first calls of each model), then take the starting RSS.
        warm = Stats()
        for rep in replicas:
            for image in sorted(payloads):
                _one(rep, keys[0], payloads, image, False, warm)
            _one(rep, keys[0], payloads, "coffee", True, warm)
        warm_errors = [s.error for s in warm.samples if s.error]
        if warm_errors:
            raise RuntimeError(f"warm-up failed: {warm_errors[:3]}")
        if args.warmup > 0:  # the same load, unmeasured: allocator arenas and model caches settle first
            _load(keys, replicas, payloads, Stats(), args, args.warmup)
        audit_before = _audit_size(env, data)
        summaries = []
        for clients in args.client_counts:
            for rep in replicas:
                rep.rss_start_mb = rep.rss_peak_mb = rss_mb(rep.proc.pid)
                rep.rss_series_mb = []
                rep.mem_series = []
            procs = serving_processes(replicas, cluster)  # Serve may have restarted a replica
            warm_rss = {name: rss_mb(pid) for name, pid in procs.items()}
            warm_parts = {name: proc_memory(pid) for name, pid in procs.items()}
            stats = Stats()
            cpu_before = cpu_snapshot(replicas, cluster)
            load_started = time.time()
            elapsed = _load(keys[:clients], replicas, payloads, stats, args, args.duration, sample_rss=True,
                            max_requests=args.requests)
            cpu = cpu_report(cpu_before, cpu_snapshot(replicas, cluster), len(stats.samples), elapsed)
            for rep in replicas:
                rep.rss_end_mb = rss_mb(rep.proc.pid)
                rep.rss_peak_mb = max(rep.rss_peak_mb, rep.rss_end_mb)
            end_rss = {name: rss_mb(pid) for name, pid in procs.items()}
            end_parts = {name: proc_memory(pid) for name, pid in procs.items()}
            summary = summarise(stats, replicas, elapsed)
            for rep in replicas:
                summary["replicas"][rep.name]["malloc_trims"] = _malloc_trims(
                    root / f"{rep.name}-malloc.jsonl", load_started, elapsed, len(stats.samples))
            summary |= {"clients": clients, "duration_s": round(elapsed, 1), "cpu": cpu, "memory": {
                name: {"pid": pid, "idle_mb": round(idle.get(name, float("nan")), 1),
                       "warm_mb": round(warm_rss[name], 1), "end_mb": round(end_rss[name], 1),
                       "growth_after_warmup_mb": round(end_rss[name] - warm_rss[name], 1),
                       "anon_mb": [round(p[name]["anon"], 1) for p in (idle_parts, warm_parts, end_parts)
                                   if name in p],
                       "file_mb": [round(p[name]["file"], 1) for p in (idle_parts, warm_parts, end_parts)
                                   if name in p]}
                for name, pid in procs.items()}}
            summaries.append(summary)
        stop_replicas(replicas)
        verify = subprocess.run(  # noqa: S603 - our own CLI
            [*cli(), "audit", "verify", "--data-dir", str(data)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        report = json.loads(verify.stdout[: verify.stdout.rindex("}") + 1]) if "{" in verify.stdout else {}
        answered = sum(s["decisions_answered"] for s in summaries)
        for summary in summaries:
            summary |= {
                "mode": mode,
                "backend": backend,
                "replicas_count": count,
                "database": "PostgreSQL (fresh database, shared)" if mode == "pg" else "SQLite",
                "audit_verify": {
                    "ok": verify.returncode == 0,
                    "entries": report.get("entries"),
                    "checkpoints": report.get("checkpoints"),
                    "message": report.get("message"),
                },
                # over every client count of this mode (one log): the added entries and the answers
                "audit_entries_added": (report.get("entries") or 0) - audit_before,
                "decisions_answered_all": answered,
            }
        return summaries
    finally:
        stop_replicas(replicas)
        if cluster is not None:
            cluster.stop()
        if db_name is not None:
            drop_database(args.pg_url, db_name)
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}", file=sys.stderr)


def _load(
    keys: list[str],
    replicas: list[Replica],
    payloads: dict[str, bytes],
    stats: Stats,
    args: argparse.Namespace,
    seconds: float | None,
    *,
    sample_rss: bool = False,
    max_requests: int | None = None,
) -> float:
    """Load until `seconds` passed or `max_requests` were answered, whichever comes first."""
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=client_loop,
            args=(i, keys[i], replicas, payloads, stop, stats, args.release_every, args.mix_cycle),
            daemon=True,
        )
        for i in range(len(keys))
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    next_series = start
    while (seconds is None or time.monotonic() - start < seconds) and (
        max_requests is None or len(stats.samples) < max_requests
    ):
        time.sleep(0.1 if max_requests else 0.5)
        if sample_rss:
            for rep in replicas:
                rep.rss_peak_mb = max(rep.rss_peak_mb, rss_mb(rep.proc.pid))
            if time.monotonic() >= next_series:
                next_series += (seconds or 60.0) / 6
                for rep in replicas:
                    rep.rss_series_mb.append(round(rss_mb(rep.proc.pid), 1))
                    parts = proc_memory(rep.proc.pid)
                    rep.mem_series.append((len(stats.samples), round(parts["rss"], 1), round(parts["anon"], 1)))
    stop.set()
    for t in threads:
        t.join(timeout=180)
    if sample_rss:  # the end of the series: the state after the last request
        for rep in replicas:
            parts = proc_memory(rep.proc.pid)
            rep.mem_series.append((len(stats.samples), round(parts["rss"], 1), round(parts["anon"], 1)))
    return time.monotonic() - start


def _malloc_trims(path: Path, started: float, elapsed: float, requests: int) -> list[dict[str, float]]:
    """The replica's trims during the measured load, each with `at` (the requests answered by then,
    estimated from the run's mean rate) and glibc's heap stats (MB) before the trim."""
    if not path.exists() or elapsed <= 0:
        return []
    out = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if started <= row["t"] <= started + elapsed:
            out.append({**row, "at": round((row["t"] - started) / elapsed * requests)})
    return out


def _one(rep: Replica, key: str, payloads: dict[str, bytes], image: str, release: int, stats: Stats) -> None:
    path, request = (
        ("/v1/release", {"use": "txt2img"})
        if release
        else ("/v1/check", {"stage": "output", "use": "txt2img"})
    )
    start = time.perf_counter()
    resp = httpx.post(
        rep.url + path,
        headers={"Authorization": f"Bearer {key}"},
        data={"request": json.dumps(request)},
        files=[("media", ("w.jpg", payloads["coffee" if release else image], "image/jpeg"))],
        timeout=180,
    )
    stats.add(
        Sample(
            rep.name,
            "warmup",
            resp.status_code,
            time.perf_counter() - start,
            resp.status_code in (200, 403),
            None if resp.status_code == 200 else resp.text[:200],
        )
    )


def _audit_size(env: dict[str, str], data: Path) -> int:
    sys.path.insert(0, str(REPO))
    from gateway.audit.reader import LogReader
    from gateway.audit.schema import audit_tables
    from gateway.db import make_engine
    from gateway.settings import Settings

    url = env.get("CONSENTGATE_DATABASE_URL") or Settings(data_dir=data).resolved_database_url
    engine = make_engine(url)
    try:
        return int(LogReader(engine, audit_tables("audit_")).head().tree_size)
    finally:
        engine.dispose()


def print_table(summary: dict[str, Any]) -> None:
    backend = "" if summary.get("backend", "inprocess") == "inprocess" else f" [models on {summary['backend']}]"
    print(
        f"\n== {summary['mode']}: {summary['replicas_count']} replica(s), {summary['database']}, "
        f"{summary['clients']} clients, {summary['duration_s']} s{backend}"
    )
    head = (
        f"{'':10} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'check p50':>9} "
        f"{'release p50':>11} {'errors':>6} {'RSS start→end (peak) MB':>24}"
    )
    print(head)
    for name, row in [*summary["replicas"].items(), ("total", summary["total"])]:
        rss = (
            f"{row['rss_start_mb']:.0f}→{row['rss_end_mb']:.0f} ({row['rss_peak_mb']:.0f})"
            if "rss_start_mb" in row
            else ""
        )
        print(
            f"{name:10} {row['requests']:>8} {row['throughput_rps']:>7} {row['p50_ms']:>8} "
            f"{row['p99_ms']:>8} "
            f"{row['p50_check_ms']:>9} {row['p50_release_ms']:>11} {row['errors']:>6} {rss:>24}"
        )
        if row["by_kind"].get("prompt"):
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(row["by_kind"].items()))
            print(f"{'':10} mix: {kinds}; prompt-only check p50 {row['p50_prompt_ms']} ms")
        if row.get("rss_series_mb"):
            print(f"{'':10} RSS during the run (MB): {' '.join(f'{v:.0f}' for v in row['rss_series_mb'])}")
        for example in row["error_examples"]:
            print(f"    error: {example}")
    print(f"memory (RSS MB, after {summary['total']['requests']} mixed requests): "
          f"{'idle':>7} {'warm':>7} {'end':>7} {'growth after warm-up':>21}")
    for name, row in summary.get("memory", {}).items():
        print(f"  {name:18} pid {row['pid']:<8} {row['idle_mb']:>7.0f} {row['warm_mb']:>7.0f} "
              f"{row['end_mb']:>7.0f} {row['growth_after_warmup_mb']:>+20.1f}")
    print_memory_verdict(summary)
    cpu = summary.get("cpu")
    if cpu:
        roles = ", ".join(f"{k} {v}" for k, v in cpu["ms_per_request"].items())
        print(f"cpu per request (ms): {roles}")
        print(f"cpu: server (gateways + Ray) {cpu['server_ms_per_request']} ms/request = {cpu['server_cores']} cores "
              f"busy; with the client {cpu['ours_ms_per_request']} ms = {cpu['ours_cores']} of {cpu['cores']} cores; "
              f"other work on the machine {cpu['other_cores']} cores; load average {cpu['loadavg']}")
    audit = summary["audit_verify"]
    print(
        f"audit verify: {'ok' if audit['ok'] else 'FAILED'} — {audit['entries']} entries, "
        f"{audit['checkpoints']} checkpoints; {summary['audit_entries_added']} added during the run, "
        f"{summary['decisions_answered_all']} decisions answered to clients"
    )


def print_memory_verdict(summary: dict[str, Any]) -> None:
    """Beside the memory block: each process's anonymous (allocated) and file-backed (libraries,
    weights) resident MB, then per gateway replica the verdict on its series — quarter means and the
    trend with its standard error over the run and its second half (bench/memtrend.py): growth after warm-up is judged
    on the trend, not on one end-minus-start figure that the saw-tooth of trims moves by +-10 MB."""
    for name, row in summary.get("memory", {}).items():
        anon, file = row.get("anon_mb", []), row.get("file_mb", [])
        if len(anon) == 3 and len(file) == 3:
            print(f"  {name:18} anonymous MB idle/warm/end {anon[0]:.0f}/{anon[1]:.0f}/{anon[2]:.0f} "
                  f"({anon[2] - anon[1]:+.1f} after warm-up); file-backed {file[0]:.0f}/{file[1]:.0f}/{file[2]:.0f} "
                  f"({file[2] - file[1]:+.1f})")
    for name, row in summary.get("replicas", {}).items():
        series = row.get("mem_series") or []
        if not series:
            continue
        at = [s[0] for s in series]
        for label, idx in (("RSS", 1), ("anonymous", 2)):
            t = trend(at, [s[idx] for s in series])
            growth = series[-1][idx] - series[0][idx]
            quarters = "/".join(f"{q:.1f}" for q in t.quarter_means)
            floors = "/".join(f"{q:.0f}" for q in t.quarter_mins)
            print(f"memory verdict [{name}, {label}]: growth after warm-up {growth:+.1f} MB over {at[-1]} requests; "
                  f"quarter means {quarters} MB (lowest sample {floors}); trend {t.slope_mb_per_1k:+.2f} "
                  f"+- {t.slope_se_mb_per_1k:.2f} MB per 1k requests, second half {t.late_slope_mb_per_1k:+.2f} "
                  f"+- {t.late_slope_se_mb_per_1k:.2f} ({t.samples} samples) -> {t.verdict}")


    for name, row in summary.get("replicas", {}).items():
        trims = row.get("malloc_trims") or []
        if len(trims) < 4:
            continue
        at = [t["at"] for t in trims]
        for label, key in (("anonymous after each trim", "anon_after"), ("glibc in use", "in_use"),
                           ("glibc free", "free"), ("glibc mmapped", "mmapped")):
            if key not in trims[0]:
                continue
            values = [t[key] for t in trims]
            t = trend(at, values)
            print(f"C heap [{name}, {label}]: {values[0]:.1f} -> {values[-1]:.1f} MB over {len(trims)} trims; quarter "
                  f"means {'/'.join(f'{q:.1f}' for q in t.quarter_means)}; trend {t.slope_mb_per_1k:+.2f} "
                  f"+- {t.slope_se_mb_per_1k:.2f} MB per 1k requests, second half {t.late_slope_mb_per_1k:+.2f} "
                  f"+- {t.late_slope_se_mb_per_1k:.2f}")


def print_scaling(results: list[dict[str, Any]]) -> None:
    """One line per (backend, mode): throughput at the last client count over the first."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["backend"], r["mode"]), []).append(r)
    for (backend, mode), rows in groups.items():
        if len(rows) < 2:
            continue
        first, last = rows[0], rows[-1]
        a, b = first["total"]["throughput_rps"], last["total"]["throughput_rps"]
        print(f"scaling [{backend}, {mode}]: {last['clients']} clients {b} req/s (p99 {last['total']['p99_ms']} ms) "
              f"vs {first['clients']} client(s) {a} req/s (p99 {first['total']['p99_ms']} ms) = "
              f"{b / a if a else float('nan'):.2f}x")
        c1, cn = first.get("cpu"), last.get("cpu")
        if c1 and cn and a:
            # The ceiling on 2 cores: N clients cannot exceed cores / (CPU per request), and one
            # client already runs at 1 / (wall per request); the ratio of the two is the most that
            # more clients can add, whatever the code does, unless the CPU per request falls.
            capacity = cn["cores"] / (cn["ours_ms_per_request"] / 1000)
            print(f"  ceiling: {cn['cores']} cores / {cn['ours_ms_per_request']} ms CPU per request (gateway + models"
                  f" + client, at {last['clients']} clients) = {capacity:.2f} req/s = {capacity / a:.2f}x the 1-client"
                  f" rate; one client already kept {c1['ours_cores']} cores busy "
                  f"({c1['ours_ms_per_request']} ms CPU per {1000 / a:.0f} ms request)")


def _snapshot() -> Any:
    import tracemalloc

    return tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None


def _malloc_trim() -> float:
    """Ask glibc to hand freed heap pages back to the OS; the RSS after it (MB)."""
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mb(os.getpid())


def trace(args: argparse.Namespace, payloads: dict[str, bytes]) -> int:
    """In-process memory trace: where does memory that stays after N requests come from?"""
    import gc
    import shutil
    import tracemalloc

    from fastapi.testclient import TestClient

    sys.path.insert(0, str(REPO))
    from gateway.app import create_app
    from gateway.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="consentgate-trace-"))
    # the app's own trimmer (CONSENTGATE_MALLOC_TRIM_S) is off here: the trace sees the raw C heap
    settings = Settings(data_dir=root / "data", policies_dir=args.policies, database_url=None,
                        extra={"malloc_trim_s": "0"})
    try:
        with TestClient(create_app(settings)) as tc:
            gw = tc.app.state.gateway  # type: ignore[attr-defined]
            key = gw.apikeys.create("load0", "generator")[1]

            def run(n: int) -> list[Sample]:
                stats = Stats()
                stop = threading.Event()
                local = [Replica("inproc", "", None, root)]  # type: ignore[arg-type] # posts go to `tc`
                threads = [threading.Thread(target=client_loop, args=(i, key, local, payloads, stop, stats,
                                                                      args.release_every, args.mix_cycle, tc))
                           for i in range(args.clients)]
                for t in threads:
                    t.start()
                while len(stats.samples) < n:
                    time.sleep(0.05)
                stop.set()
                for t in threads:
                    t.join(timeout=120)
                bad = [s.error for s in stats.samples if s.error]
                if bad:
                    raise RuntimeError(f"errors during the trace: {bad[:3]}")
                return stats.samples

            pid = os.getpid()
            idle = rss_mb(pid)
            run(max(200, args.trace // 10))  # warm-up
            gc.collect()
            if not args.trace_no_heap:
                tracemalloc.start(12)
            warm_rss, first = rss_mb(pid), _snapshot()
            run(args.trace)
            gc.collect()
            end_rss, second = rss_mb(pid), _snapshot()
            print(f"trace: {args.trace} requests ({args.mix or 'image checks + releases'}), in-process, SQLite")
            print(f"RSS MB: idle {idle:.0f}, after warm-up {warm_rss:.0f}, after {args.trace} requests {end_rss:.0f} "
                  f"(growth {end_rss - warm_rss:+.1f})")
            trimmed = _malloc_trim()
            print(f"RSS MB after malloc_trim(0) (freed C heap handed back to the OS): {trimmed:.0f} "
                  f"({trimmed - end_rss:+.1f}); glibc arenas: {os.environ.get('MALLOC_ARENA_MAX', 'default')}")
            for again in range(args.trace_rounds - 1):
                before = rss_mb(pid)
                run(args.trace)
                gc.collect()
                after = rss_mb(pid)
                print(f"round {again + 2}: {args.trace} more requests: RSS {before:.0f} -> {after:.0f} "
                      f"({after - before:+.1f}); after malloc_trim {_malloc_trim():.0f}")
            if first is None or second is None:
                return 0
            heap_a = sum(s.size for s in first.statistics("filename"))
            heap_b = sum(s.size for s in second.statistics("filename"))
            print(f"Python heap allocated since the warm-up and still live (tracemalloc): "
                  f"{(heap_b - heap_a) / 2**20:+.2f} MB")
            print("allocation sites that grew most (size, count, where):")
            for stat in second.compare_to(first, "traceback")[:args.trace_top]:
                if stat.size_diff <= 0:
                    continue
                frames = [f"{f.filename.replace(str(REPO) + '/', '')}:{f.lineno}" for f in stat.traceback[-4:]]
                print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d}  {' <- '.join(reversed(frames))}")
            tracemalloc.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["pg", "sqlite", "both"], default="both")
    parser.add_argument("--duration", type=float, default=None,
                        help="cap on the seconds of load per client count (default: none, --requests decides)")
    parser.add_argument("--requests", type=int, default=None,
                        help="measured requests per client count (default 10000 unless only --duration is given)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of unmeasured load first (default: 10%% of --duration, 2-10 s; 10 s by request count)",
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads (4-16; default 8)")
    parser.add_argument(
        "--release-every", type=int, default=10, help="every Nth request is a release (default 10)"
    )
    parser.add_argument("--mix", default=None,
                        help="request kinds by weight, e.g. prompt=85,image=10,release=5 (default: image "
                             "checks, every --release-every-th a release)")
    parser.add_argument("--trace", type=int, default=0,
                        help="in-process tracemalloc run of N requests instead of the load (see above)")
    parser.add_argument("--trace-top", type=int, default=15, help="allocation sites to print with --trace")
    parser.add_argument("--trace-rounds", type=int, default=1, help="with --trace: rounds of N requests")
    parser.add_argument("--trace-no-heap", action="store_true", help="with --trace: RSS only (no tracemalloc)")
    parser.add_argument("--pg-url", default=os.environ.get("CONSENTGATE_LOAD_PG_URL", DEFAULT_PG))
    parser.add_argument("--policies", type=Path, default=REPO / "policies")
    parser.add_argument("--model-threads", type=int, default=1, help="CONSENTGATE_MODEL_THREADS per replica")
    parser.add_argument("--json", type=Path, default=None, help="also write the summaries here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dirs and replica logs")
    parser.add_argument("--backend", choices=["inprocess", "ray"], default="inprocess")
    parser.add_argument("--scaling", default=None, help="client counts to measure in turn, e.g. 1,4")
    parser.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray cluster")
    parser.add_argument("--ray-workers", type=Path, default=REPO / "deploy" / "ray" / "models.yaml")
    args = parser.parse_args(argv)
    args.client_counts = [int(c) for c in args.scaling.split(",")] if args.scaling else [args.clients]
    args.mix_cycle = parse_mix(args.mix)
    if args.requests is None and args.duration is None:
        args.requests = 10_000
    if args.warmup is None:
        args.warmup = min(10.0, max(2.0, args.duration / 10)) if args.duration else 10.0
    payloads = images()
    if args.trace:
        return trace(args, payloads)
    modes = ["pg", "sqlite"] if args.mode == "both" else [args.mode]
    results = []
    failed = False
    backends = ["inprocess", "ray"] if args.backend == "ray" else ["inprocess"]
    for backend in backends:
        for mode in modes:
            summaries = run_mode(mode, args, payloads, backend)
            for summary in summaries:
                print_table(summary)
                results.append(summary)
                if (
                    summary["total"]["errors"]
                    or not summary["audit_verify"]["ok"]
                    or summary["audit_entries_added"] != summary["decisions_answered_all"]
                ):
                    failed = True
    print()
    print_scaling(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
