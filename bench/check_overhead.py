"""Why: the gateway must cost little beyond the models it runs. This times POST /v1/check over
HTTP against a running server (started here, default policy, real models) on a 512² and a 1024²
image, versus the same models called directly in one process on the same decoded image, and
prints both medians and the ratio (goal <= 1.10). First it prints the per-model and per-stage split
in process (#21.3): today's single-scale face path, the full-coverage path and their raw floor, and the
face embedding alone — dlib's own ResNet beside the same weights on the faster engine
(`classifiers/dlib_resnet.py`) — then the whole check with dlib's embedding and with the engine, and the
new path split across the cores (the default) and not split (its stages one after another, one thread
each: gateway/pipeline/parallel.py), and four closed-loop clients' checks/s and CPU per check with every
check split, with only a check that is alone split (`split_below` 2) and with none split.

Before all that (`--profile-only`: only this) it prints where the CPU of one check goes (#21.3), per
stage, at 1024² and 2048², each stage on one thread (`thread_budget(1)`, process CPU time, medians):
decode and the working copy, PDQ, each NSFW model's preprocessing per view and its one inference over
all views, the full-coverage face path per HOG pyramid level (level image, scan), NMS + verification,
landmarks + chip and the embedding, today's single-scale detection beside it, and the whole check not
split (its stages one after another) with what is left over (record, decide, audit, threads).

    .venv/bin/python bench/check_overhead.py [--n 30] [--url URL --api-key KEY] [--split-only] [--profile-only]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def image_bytes(size: int) -> bytes:
    import skimage.data

    arr = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((size, size), Image.Resampling.LANCZOS))
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def start_server(port: int) -> tuple[subprocess.Popen[bytes], str, Path]:
    data = Path(tempfile.mkdtemp(prefix="cg-bench-"))
    env = {**os.environ, "CONSENTGATE_DATA_DIR": str(data), "CONSENTGATE_POLICIES": str(REPO / "policies")}
    exe = str(REPO / ".venv" / "bin" / "consentgate")
    subprocess.run([exe, "init"], env=env, check=True, capture_output=True)
    key = subprocess.run([exe, "apikey", "create", "--tenant", "bench", "--role", "generator"], env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    proc = subprocess.Popen([exe, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, key, data
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not become ready")


def time_http(url: str, key: str, data: bytes, n: int) -> float:
    headers = {"Authorization": f"Bearer {key}"}
    req = {"request": json.dumps({"stage": "input", "use": "img2img"})}
    times = []
    with httpx.Client(timeout=60) as client:
        for i in range(n + 3):
            t = time.perf_counter()
            files = {"media": ("x.jpg", data, "image/jpeg")}
            r = client.post(f"{url}/v1/check", headers=headers, data=req, files=files)
            r.raise_for_status()
            if i >= 3:
                times.append(time.perf_counter() - t)
    return statistics.median(times)


def time_direct(data: bytes, n: int) -> float:
    """The same models the default policy runs for img2img input, called one after another."""
    from classifiers.registry import builtin_registry
    from gateway.media import MediaLimits, decode_image

    reg = builtin_registry()
    nsfw = reg.create("nsfw", "opennsfw", {})
    face = reg.create("face", "dlib", {})
    hasher = reg.create("hash", "pdq", {})
    img = decode_image(data, MediaLimits())
    times = []
    for i in range(n + 3):
        t = time.perf_counter()
        nsfw.classify([img.working])
        face.analyze(img.working)
        hasher.hashes(img.working)
        if i >= 3:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def median_ms(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def median_cpu_ms(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    """Median process CPU time (all threads) of a call: less distorted than wall time on a loaded machine."""
    fn()
    times = []
    for _ in range(n):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times) * 1000


def split(n: int) -> None:
    """#21.3: per model and per stage, in process: today's path (single-scale dlib on the working copy),
    the new path (full-coverage dlib on the full image, NSFW tiles, NudeNet face proposals) and the raw
    floor (the models the new path runs, back to back), and the whole check (`Pipeline.check`, default
    policy, output/txt2img) with either face path."""
    import asyncio
    import functools

    sys.path.insert(0, str(REPO))
    from bench.coverage import pipeline
    from classifiers.face_dlib import DlibFaceAnalyzer
    from classifiers.registry import builtin_registry
    from gateway.apikeys import Principal
    from gateway.media import MediaLimits, decode_image
    from gateway.pipeline import CheckRequest
    from gateway.pipeline.parallel import InFlight

    reg = builtin_registry()
    opennsfw, nudenet = reg.create("nsfw", "opennsfw", {}), reg.create("nsfw", "nudenet", {})
    hasher = reg.create("hash", "pdq", {})
    # "today" and the full-coverage lines keep dlib's own embedding, as they measured before the engine
    full = DlibFaceAnalyzer({"embed_engine": "dlib"})
    single = DlibFaceAnalyzer({"min_face_px": 0, "embed_engine": "dlib"})
    engines = {t: DlibFaceAnalyzer({"threads": t}) for t in (1, 2)}
    new_pipe, old_pipe = pipeline("{}"), pipeline("{min_face_px: 0, embed_engine: dlib}")
    dlib_pipe = pipeline("{embed_engine: dlib}")  # full coverage + dlib's embedding: main before the engine
    serial_pipe = pipeline("{}")
    serial_pipe.checker.in_flight = InFlight(split_below=0)  # never split
    schedules = {"every check split": InFlight(), "only a check alone": InFlight(split_below=2),
                 "none split": InFlight(split_below=0)}
    who = Principal("bench", "bench", "generator")
    req = CheckRequest(stage="output", use="txt2img")
    print("per-model / per-stage split (in process, median ms; output/txt2img of the default policy)")
    for size in (512, 1024):
        data = image_bytes(size)
        img = decode_image(data, MediaLimits())
        faces = full.detect(img.rgb)
        parts = {
            "decode": median_ms(functools.partial(decode_image, data, MediaLimits()), n),
            "opennsfw": median_ms(functools.partial(opennsfw.classify, [img.working]), n),
            "nudenet(+face boxes)": median_ms(functools.partial(nudenet.classify_with_faces, [img.working]), n),
            "pdq": median_ms(functools.partial(hasher.hashes, img.working), n),
            "dlib detect today (single-scale)": median_ms(functools.partial(single.detect, img.working), n),
            "dlib detect full coverage": median_ms(functools.partial(full.detect, img.rgb), n),
            f"dlib landmarks+embed ({len(faces)} face)": median_ms(functools.partial(full.embed, img.rgb, faces), n),
        }
        engine = engines[1].embed_engine
        extra = {
            f"landmarks+chip only ({len(faces)} face)":
                median_ms(functools.partial(engines[1]._chips, img.rgb, faces), n),
            **{f"landmarks+embed {engine} {t} thr ({len(faces)} face)":
               median_ms(functools.partial(a.embed, img.rgb, faces), n) for t, a in engines.items()},
        }
        for name, ms in (parts | extra).items():
            print(f"  {size}² {name:<36} {ms:8.1f} ms")
        dlib_embed, new_embed = parts[f"dlib landmarks+embed ({len(faces)} face)"], extra[
            f"landmarks+embed {engine} 2 thr ({len(faces)} face)"]
        print(f"  {size}² embedding alone: dlib {dlib_embed:6.1f} ms | {engine} (2 threads) {new_embed:6.1f} ms | "
              f"dlib/{engine} {dlib_embed / new_embed:4.1f}×")
        cpu_dlib = median_cpu_ms(functools.partial(full.embed, img.rgb, faces), n)
        cpu_new = median_cpu_ms(functools.partial(engines[1].embed, img.rgb, faces), n)
        print(f"  {size}² embedding alone, CPU time: dlib {cpu_dlib:6.1f} ms | {engine} (1 thread) {cpu_new:6.1f} ms | "
              f"dlib/{engine} {cpu_dlib / cpu_new:4.1f}×")
        floor_dlib = sum(v for k, v in parts.items() if "today" not in k)  # the full path's raw models, dlib embed
        floor = floor_dlib - dlib_embed + new_embed  # ... with the engine
        today_raw = sum(v for k, v in parts.items() if "full coverage" not in k)
        old = median_ms(lambda: asyncio.run(old_pipe.check(who, req, [data])), n)  # noqa: B023
        mid = median_ms(lambda: asyncio.run(dlib_pipe.check(who, req, [data])), n)  # noqa: B023
        new = median_ms(lambda: asyncio.run(new_pipe.check(who, req, [data])), n)  # noqa: B023
        goal = 120 if size == 512 else 160
        print(f"  {size}² check today's path {old:7.1f} ms (its raw models {today_raw:6.1f}) | new path {new:7.1f} ms "
              f"(raw floor {floor:6.1f}, new/floor {new / floor:4.2f}×, new/today {new / old:4.2f}×) | "
              f"goal <= {goal} ms: {'met' if new <= goal else 'NOT met'}")
        print(f"  {size}² check full coverage with dlib's embedding {mid:7.1f} ms (raw {floor_dlib:6.1f}) | "
              f"with {engine} {new:7.1f} ms | engine/dlib {new / mid:4.2f}×")
        cpu = [median_cpu_ms(lambda p=p, d=data: asyncio.run(p.check(who, req, [d])), n)
               for p in (old_pipe, dlib_pipe, new_pipe)]
        print(f"  {size}² check CPU time (all threads): today's path {cpu[0]:7.1f} ms | full coverage with dlib's "
              f"embedding {cpu[1]:7.1f} ms | with {engine} {cpu[2]:7.1f} ms")
        serial = median_ms(lambda: asyncio.run(serial_pipe.check(who, req, [data])), n)  # noqa: B023
        serial_cpu = median_cpu_ms(lambda: asyncio.run(serial_pipe.check(who, req, [data])), n)  # noqa: B023
        print(f"  {size}² new path split (default) {new:7.1f} ms, CPU {cpu[2]:7.1f} ms | not split {serial:7.1f} ms, "
              f"CPU {serial_cpu:7.1f} ms | split/not {new / serial:4.2f}×")
        rates: dict[str, list[tuple[float, float]]] = {name: [] for name in schedules}
        for _ in range(2):  # interleaved rounds: the machine's load drifts
            for name, flight in schedules.items():
                serial_pipe.checker.in_flight = flight
                rates[name].append(closed_loop(serial_pipe, who, req, data, clients=4, seconds=3.0))
        serial_pipe.checker.in_flight = InFlight(split_below=0)
        print(f"  {size}² 4 clients, closed loop (CPU per check): " + " | ".join(
            f"{name} {statistics.median(r for r, _ in v):5.2f}/s, CPU {statistics.median(c for _, c in v):6.1f} ms"
            for name, v in rates.items()))


def profile(n: int, sizes: tuple[int, ...] = (1024, 2048)) -> None:
    """#21.3: the CPU of one check per stage, each stage alone on one thread (medians of `n`)."""
    import asyncio
    import functools

    import cv2

    sys.path.insert(0, str(REPO))
    from bench.coverage import jpeg, pipeline
    from classifiers._common import thread_budget
    from classifiers.face_dlib import (
        HOG_FACE_PX,
        VERIFY_FACE_PX,
        DlibFaceAnalyzer,
        _nms,
        pyramid_levels,
        single_level_detector,
    )
    from classifiers.nsfw_nudenet import _preprocess as nudenet_pre
    from classifiers.nsfw_opennsfw import preprocess as opennsfw_pre
    from classifiers.registry import builtin_registry
    from gateway.apikeys import Principal
    from gateway.media import MediaLimits, decode_image, resize_max_side
    from gateway.pipeline import CheckRequest
    from gateway.pipeline.check import nsfw_tiles
    from gateway.pipeline.parallel import InFlight
    from tests.support import faces

    reg = builtin_registry()
    opennsfw, nudenet = reg.create("nsfw", "opennsfw", {}), reg.create("nsfw", "nudenet", {})
    hasher = reg.create("hash", "pdq", {})
    full, single = DlibFaceAnalyzer({}), DlibFaceAnalyzer({"min_face_px": 0})
    serial_pipe = pipeline("{}")
    serial_pipe.checker.in_flight = InFlight(split_below=0)  # stages one after another, one thread each
    split_pipe, today_pipe = pipeline("{}"), pipeline("{min_face_px: 0}")
    who, req = Principal("bench", "bench", "generator"), CheckRequest(stage="output", use="txt2img")
    print("where the CPU of one check goes (#21.3): each stage alone on one thread, process CPU time, median ms;")
    print("render: coffee at side², the astronaut pasted with a 138 px face (bench/coverage.py's), output/txt2img")
    for side in sizes:
        image = faces.canvas("coffee", side)
        faces.paste(image, "astronaut", 138, side // 3, side // 3)
        data = jpeg(image)
        img = decode_image(data, MediaLimits())
        views = [img.working] + [tile for tile, _, _ in nsfw_tiles(img.rgb)]
        grey = cv2.cvtColor(img.rgb, cv2.COLOR_RGB2GRAY)
        rows: list[tuple[str, float]] = []

        def cpu(name: str, fn, count: int = n, rows: list[tuple[str, float]] = rows) -> float:  # type: ignore[no-untyped-def]
            ms = median_cpu_ms(fn, count)
            rows.append((name, ms))
            return ms

        with thread_budget(1):
            stages = cpu("decode (JPEG, orientation, pixels, working copy)",
                         functools.partial(decode_image, data, MediaLimits()))
            cpu("  of which the working copy (box resize to 1024)",
                functools.partial(resize_max_side, img.rgb, 1024))
            stages += cpu("pdq (8 dihedral hashes of the working copy)", functools.partial(hasher.hashes, img.working))
            for label, model, pre in (("opennsfw", opennsfw, opennsfw_pre), ("nudenet", nudenet, nudenet_pre)):
                stages += cpu(f"{label} on {len(views)} view(s), one call", functools.partial(model.classify, views))
                cpu(f"  {label} preprocessing, whole image (working copy)", functools.partial(pre, img.working))
                if len(views) > 1:
                    cpu(f"  {label} preprocessing, per 1024 px tile", functools.partial(pre, views[1]))
            stages += cpu("dlib full coverage: detect + embed", functools.partial(full.analyze, img.rgb))
            cpu("  greyscale", functools.partial(cv2.cvtColor, img.rgb, cv2.COLOR_RGB2GRAY))
            h, w = grey.shape
            import dlib

            source, source_k = grey, 1.0  # levels below 1× are shrunk from the previous one, as the analyzer does
            for k, cell in pyramid_levels(h, w, HOG_FACE_PX / 40):
                size = (max(1, round(w * k)), max(1, round(h * k)))
                interp = cv2.INTER_LINEAR if k > 1 else cv2.INTER_AREA
                base = source if k < 1 and source_k > k else grey
                level = grey if size == (w, h) else cv2.resize(base, size, interpolation=interp)
                if k < 1:
                    source, source_k = level, k
                detector = single_level_detector(dlib, cell)
                made = 0.0 if level is grey else median_cpu_ms(functools.partial(cv2.resize, base, size,
                                                                                 interpolation=interp), n)
                scan = median_cpu_ms(functools.partial(detector.run, level, 0, -0.4), n)
                rows.append((f"  HOG level ×{k:.3f}, {cell} px cells, {size[0]}×{size[1]} (+image {made:4.1f})",
                             scan + made))
            candidates = _nms(sorted(full._first_pass(grey, 1), key=lambda c: (c[0], c[1])), 0.4)
            jobs = [(box, px) for box, sc in candidates if sc < 0.8 for px in VERIFY_FACE_PX]
            cpu(f"  verification: {len(jobs) // len(VERIFY_FACE_PX)} candidate(s) of {len(candidates)}",
                functools.partial(full._verify_all, grey, jobs, 1))
            found = full.detect(img.rgb)
            cpu(f"  landmarks + chip ({len(found)} face)", functools.partial(full._chips, img.rgb, found))
            cpu(f"  landmarks + embedding ({len(found)} face, {full.embed_engine})",
                functools.partial(full.embed, img.rgb, found))
            cpu("today's path: dlib single-scale detect + embed", functools.partial(single.analyze, img.rgb))
        serial = cpu("whole check, not split (Pipeline.check)",
                     lambda: asyncio.run(serial_pipe.check(who, req, [data])))  # noqa: B023
        rows.append(("  left over: record, decide, audit, threads", serial - stages))
        cpu("whole check, split (the default)", lambda: asyncio.run(split_pipe.check(who, req, [data])))  # noqa: B023
        cpu("today's whole check (single-scale faces), split",
            lambda: asyncio.run(today_pipe.check(who, req, [data])))  # noqa: B023
        for name, ms in rows:
            print(f"  {side}² {name:<68} {ms:8.1f} ms")


def closed_loop(pipe, who, req, data: bytes, *, clients: int, seconds: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """`clients` callers each checking `data` back to back for `seconds`: checks/s and CPU ms per check."""
    import asyncio

    async def run() -> int:
        done, end = 0, time.perf_counter() + seconds

        async def client() -> None:
            nonlocal done
            while time.perf_counter() < end:
                await pipe.check(who, req, [data])
                done += 1

        await asyncio.gather(*(client() for _ in range(clients)))
        return done

    t, c = time.perf_counter(), time.process_time()
    done = asyncio.run(run())
    return done / (time.perf_counter() - t), (time.process_time() - c) * 1000 / max(done, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--port", type=int, default=8199)
    ap.add_argument("--url")
    ap.add_argument("--api-key")
    ap.add_argument("--split-only", action="store_true", help="only the in-process per-stage split (#21.3)")
    ap.add_argument("--profile-only", action="store_true", help="only the CPU per stage at 1024² and 2048² (#21.3)")
    args = ap.parse_args()
    profile(max(3, args.n // 3))
    if args.profile_only:
        return
    split(max(3, args.n // 3))
    if args.split_only:
        return
    proc = None
    if args.url:
        url, key = args.url, args.api_key
    else:
        proc, key, _ = start_server(args.port)
        url = f"http://127.0.0.1:{args.port}"
    try:
        print(f"{'size':>6} {'http /v1/check':>16} {'direct models':>14} {'ratio':>7}")
        for size in (512, 1024):
            data = image_bytes(size)
            direct = time_direct(data, args.n)
            http = time_http(url, key, data, args.n)
            print(f"{size:>5}² {http * 1000:>14.1f}ms {direct * 1000:>12.1f}ms {http / direct:>7.2f}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
