"""Why: the registry must answer "who is this face?" in about a millisecond at a million templates.

Benchmarks `gateway.registry.index.FaceIndex` on synthetic 128-d L2-normalised templates (one per
subject): the exact path (numpy, the baseline, measured in the same run) against FAISS HNSW. Queries
are near-duplicates of enrolled templates (cosine ~0.97, like a re-encoded photo). Prints per size:
build time, memory (RSS growth), p50/p99 single-query latency, recall@1 of HNSW against exact search,
and the speed-up. Goal at 1M: p50 <= 1 ms with recall@1 >= 0.99.

    .venv/bin/python bench/registry_search.py --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from gateway.registry.index import FaceIndex

DIM = 128


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def latencies(index: FaceIndex, queries: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
    times, top = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = index.search(q[None, :], threshold=0.5, k=5)[0]
        times.append(time.perf_counter() - t0)
        top.append(hits[0][0] if hits else None)
    return np.array(times) * 1000, top


def run(n: int, n_queries: int, n_exact: int, ef_search: int, m: int, ef_c: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    vectors = unit(rng.standard_normal((n, DIM), dtype=np.float32))
    subjects = [f"s{i}" for i in range(n)]
    seqs = np.arange(1, n + 1)
    picks = rng.choice(n, n_queries, replace=False)
    queries = unit(vectors[picks] + 0.02 * rng.standard_normal((n_queries, DIM), dtype=np.float32))

    exact = FaceIndex(DIM, hnsw_min_size=n + 1, background=False)
    exact.add(seqs, subjects, vectors)
    base = rss_mb()
    hnsw = FaceIndex(
        DIM, hnsw_min_size=1, hnsw_m=m, ef_construction=ef_c, ef_search=ef_search, background=False
    )
    t0 = time.perf_counter()
    hnsw.add(seqs, subjects, vectors)  # crosses hnsw_min_size: builds the graph (foreground)
    build_s = time.perf_counter() - t0
    mem = rss_mb() - base
    assert hnsw.uses_hnsw

    ex_ms, ex_top = latencies(exact, queries[:n_exact])
    hn_ms, hn_top = latencies(hnsw, queries)
    truth = [subjects[i] for i in picks]
    recall_vs_exact = np.mean([a == b for a, b in zip(hn_top[:n_exact], ex_top, strict=True)])
    recall_truth = np.mean([a == b for a, b in zip(hn_top, truth, strict=True)])
    p50_ex, p99_ex = np.percentile(ex_ms, [50, 99])
    p50, p99 = np.percentile(hn_ms, [50, 99])
    print(
        f"n={n:>9,}  build {build_s:7.1f} s  mem +{mem:7.0f} MiB"
        f" | exact p50 {p50_ex:7.2f} ms p99 {p99_ex:7.2f} ms"
        f" | hnsw p50 {p50:6.3f} ms p99 {p99:6.3f} ms | recall@1 vs exact {recall_vs_exact:.4f}"
        f" (n={n_exact}), vs enrolled {recall_truth:.4f} (n={n_queries}) | speed-up p50 {p50_ex / p50:6.1f}x",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sizes", default="10000,100000", help="comma-separated registry sizes (e.g. add 1000000)"
    )
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--exact-queries", type=int, default=200, help="queries timed on the exact baseline")
    ap.add_argument("--ef-search", type=int, default=128)
    ap.add_argument("--m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(
        f"FaceIndex: exact (numpy) vs FAISS HNSW M={args.m} efConstruction={args.ef_construction} "
        f"efSearch={args.ef_search}, dim {DIM}, "
        f"{os.cpu_count()} CPUs"
    )
    for n in (int(s) for s in args.sizes.split(",")):
        run(
            n,
            min(args.queries, n),
            min(args.exact_queries, args.queries, n),
            args.ef_search,
            args.m,
            args.ef_construction,
            args.seed,
        )


if __name__ == "__main__":
    main()
