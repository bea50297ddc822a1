"""Why: the wall time of one check on two cores is at least its CPU time over two plus whatever runs on one
core alone; to know which of the two to work on (#14.7) one needs to see, per thread, what ran when. This
runs the bench's render (coffee with the astronaut pasted at ~138 px, as bench/coverage.py) through
`Pipeline.check` (default policy, full coverage, split as by default) and records each unit of work with its
thread, start, end and thread CPU: decode, the first pass's level images and HOG scans, each NSFW model's
preprocessing and ONNX runs, landmarks/chips and the embedding. It prints, as medians over `--n` checks:
wall, process CPU, cores busy (CPU / wall), the time before the first model unit starts (decode: one core),
the time after the last model unit ends, and the gap between the two HOG scan threads' last scans (one core
scanning alone); then the spans of the last check.

    PYTHONPATH=. .venv/bin/python bench/check_timeline.py [--n 7] [--side 2048]

The units are timed by wrapping the adapters' calls in this process only (no code changes); on a shared
machine the spans stretch with the load: read the ratios and the gaps, with the load average beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

Span = tuple[int, str, float, float, float]  # thread id, unit, start, end, thread CPU (s)
SPANS: list[Span] = []


def timed(label: str | Any, fn: Any) -> Any:
    """`fn` recording a span per call; `label` is a string or a function of the call's arguments."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            name = label if isinstance(label, str) else label(*args, **kwargs)
            SPANS.append((threading.get_ident(), name, start, time.perf_counter(), time.thread_time() - cpu))

    return wrapper


class TimedScanner:
    def __init__(self, inner: Any, cell: int) -> None:
        self._run = timed(lambda img, *_: f"HOG {cell} px cells on {img.shape[1]}x{img.shape[0]}", inner.run)

    def run(self, *args: Any) -> Any:
        return self._run(*args)


def instrument() -> None:
    import classifiers._common as common
    import classifiers.face_dlib as face_dlib
    import classifiers.nsfw_nudenet as nudenet
    import classifiers.nsfw_opennsfw as opennsfw
    import gateway.pipeline.steps as steps

    single = face_dlib.single_level_detector
    face_dlib.single_level_detector = lambda dlib, cell=8: TimedScanner(single(dlib, cell), cell)  # type: ignore
    face_dlib._LevelImages.get = timed("level image", face_dlib._LevelImages.get)  # type: ignore[method-assign]
    face_dlib.DlibFaceAnalyzer._chips = timed("landmarks + chips", face_dlib.DlibFaceAnalyzer._chips)  # type: ignore
    face_dlib.DlibFaceAnalyzer._with_descriptors = timed(  # type: ignore[method-assign]
        "embedding", face_dlib.DlibFaceAnalyzer._with_descriptors)
    common.OnnxSessions.run = timed(  # type: ignore[method-assign]
        lambda self, _outputs, feeds: f"ONNX {self._path.name} x{next(iter(feeds.values())).shape[0]}",
        common.OnnxSessions.run)
    nudenet._preprocess = timed("nudenet preprocess", nudenet._preprocess)  # type: ignore[assignment]
    opennsfw.preprocess = timed("opennsfw preprocess", opennsfw.preprocess)  # type: ignore[assignment]
    steps.decode_image = timed("decode", steps.decode_image)  # type: ignore[assignment]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=7)
    ap.add_argument("--side", type=int, default=2048)
    args = ap.parse_args()
    instrument()
    from bench.coverage import jpeg, pipeline
    from gateway.apikeys import Principal
    from gateway.pipeline import CheckRequest
    from tests.support import faces

    image = faces.canvas("coffee", args.side)
    faces.paste(image, "astronaut", 138, args.side // 3, args.side // 3)
    data, pipe = jpeg(image), pipeline("{}")
    who, req = Principal("bench", "bench", "generator"), CheckRequest(stage="output", use="txt2img")
    asyncio.run(pipe.check(who, req, [data]))  # warm-up
    rows: list[tuple[float, float, float, float, float]] = []
    for _ in range(args.n):
        SPANS.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        asyncio.run(pipe.check(who, req, [data]))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        models = [s for s in SPANS if s[1] != "decode"]
        first, last = min(s[2] for s in models), max(s[3] for s in models)
        hog_end: dict[int, float] = {}
        for tid, name, _start, end, _cpu in SPANS:
            if name.startswith("HOG"):
                hog_end[tid] = max(hog_end.get(tid, 0.0), end)
        ends = sorted(hog_end.values())
        gap = ends[-1] - ends[0] if len(ends) == 2 else float("nan")
        rows.append((wall, cpu, first - t0, t0 + wall - last, gap))
    load = Path("/proc/loadavg").read_text().split()[:3]
    med = [statistics.median(r[i] for r in rows) * 1000 for i in range(5)]
    print(f"# {args.side}² check, medians of {args.n} (load average {' '.join(load)})")
    print(f"wall {med[0]:.0f} ms | CPU {med[1]:.0f} ms | cores busy {med[1] / med[0]:.2f} | before the first model "
          f"unit {med[2]:.0f} ms | after the last {med[3]:.0f} ms | HOG threads' finish gap {med[4]:.1f} ms "
          f"(each check: {' '.join(f'{r[4] * 1000:.0f}' for r in rows)})")
    print("## the last check: thread, start, end, thread CPU (ms from the check's start)")
    threads: dict[int, int] = {}
    for tid, name, start, end, cpu in sorted(SPANS, key=lambda s: s[2]):
        slot = threads.setdefault(tid, len(threads))
        print(f"T{slot} {1000 * (start - t0):7.1f} {1000 * (end - t0):7.1f} {1000 * cpu:7.1f}  {name}")


if __name__ == "__main__":
    main()
