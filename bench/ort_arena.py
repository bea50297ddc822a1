"""Why: the serving process's C heap rose in steps in some 10k-request runs (issue #21.4,
docs/deploy.md "Memory per serving process"), and ONNX Runtime's CPU arena is a suspect: a BFC arena
per session that grows by regions of doubling size when the calls running at once need more than it
holds, and never gives a region back. This bench runs the gateway's ONNX sessions (NudeNet,
open_nsfw, the dlib ResNet embedding) the way the gateway does — several threads calling one session
at once, batches of varying size (views per image, faces per image) — with each `CONSENTGATE_ORT_ARENA`
mode in a fresh process (all at once, sharing the machine's load alike), and prints per round the
resident anonymous memory after `malloc_trim(0)` (the floor: what glibc cannot hand back, i.e. what
ORT holds) and the CPU per call.

    .venv/bin/python bench/ort_arena.py                      # every mode, 6 rounds of 240 calls, 8 threads
    .venv/bin/python bench/ort_arena.py --modes on,off --rounds 4 --calls 120
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def anon_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> None:
    """One mode (already in the environment): build the sessions, run the rounds, print JSON."""
    sys.path.insert(0, str(REPO))
    import numpy as np

    from classifiers.dlib_resnet import OnnxResnetEngine, read_dlib_resnet
    from classifiers.face_dlib import RESNET, dlib_models_dir
    from classifiers.nsfw_nudenet import NudeNetClassifier
    from classifiers.nsfw_opennsfw import OpenNsfwClassifier

    libc = ctypes.CDLL("libc.so.6")
    nude = NudeNetClassifier({"threads": 1})
    nsfw = OpenNsfwClassifier({"threads": 1})
    weights = dlib_models_dir() / RESNET
    embed = OnnxResnetEngine(read_dlib_resnet(weights), 1)
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8)
              for h, w in ((512, 512), (384, 640), (640, 480), (256, 256))]
    chips = rng.integers(0, 256, (8, 150, 150, 3), dtype=np.uint8)

    def one(r: random.Random) -> None:
        kind = r.random()
        if kind < 0.4:
            nude.classify([images[r.randrange(4)] for _ in range(r.choice((1, 1, 2, 4)))])
        elif kind < 0.7:
            nsfw.classify([images[r.randrange(4)] for _ in range(r.choice((1, 1, 2, 4)))])
        else:
            embed(chips[: r.choice((1, 1, 2, 3, 5, 8))])

    def round_(calls: int, seed: int) -> None:
        left = [calls]
        lock = threading.Lock()

        def loop(i: int) -> None:
            r = random.Random(seed * 100 + i)
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                one(r)

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    round_(args.calls // 4, 0)  # warm-up
    libc.malloc_trim(0)
    out = {"mode": os.environ.get("CONSENTGATE_ORT_ARENA", "on"), "warm_floor": anon_mb(), "rounds": []}
    for k in range(args.rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        round_(args.calls, k + 1)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        after = anon_mb()
        libc.malloc_trim(0)
        out["rounds"].append({"after": round(after, 1), "floor": round(anon_mb(), 1),
                              "cpu_ms_per_call": round(cpu / args.calls * 1000, 1),
                              "wall_s": round(wall, 1)})
    print(json.dumps(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="on,off")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=240)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    # the modes run at once, one process each, so that they share the machine's load alike
    procs = {}
    for mode in args.modes.split(","):
        env = dict(os.environ, CONSENTGATE_ORT_ARENA=mode, MALLOC_ARENA_MAX="2")
        cmd = [sys.executable, __file__, "--child", "--rounds", str(args.rounds), "--calls", str(args.calls),
               "--threads", str(args.threads)]
        procs[mode] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: S603
    for mode, proc in procs.items():
        stdout, stderr = proc.communicate()
        if proc.returncode:
            print(stderr[-2000:])
            return 1
        data = json.loads(stdout.strip().splitlines()[-1])
        floors = [r["floor"] for r in data["rounds"]]
        cpu = [r["cpu_ms_per_call"] for r in data["rounds"]]
        print(f"{mode:>10}: anon after warm-up + trim {data['warm_floor']:.1f} MB; floors per round "
              f"{' '.join(f'{f:.1f}' for f in floors)} (last - warm {floors[-1] - data['warm_floor']:+.1f} MB); "
              f"peak after a round {max(r['after'] for r in data['rounds']):.1f}; CPU ms per call "
              f"{' '.join(f'{c:.1f}' for c in cpu)} (mean {sum(cpu) / len(cpu):.1f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
