"""Why: the video path must stay near what decoding and encoding alone cost. This benchmark
renders a 720p30 clip (default 60 s; `--seconds` for quick runs), measures the floor in the same
run (PyAV decode + libx264 encode of the same clip, same preset and crf, no models, audio
copied), then sends the clip through the real path — `POST /v1/jobs` on an in-process gateway
with the repository's default policy (open_nsfw + NudeNet + dlib faces + PDQ hash list), a
`check` job and a `release` job, polled until done — and prints for each its wall time and the
CPU time of the process (all threads), their ratios to the floor, and the ratio to real time.
It also checks the released file: size against the floor's, the watermark after a re-encode
at half the bitrate.

    .venv/bin/python bench/video.py --seconds 10
    .venv/bin/python bench/video.py --sequential          # analysis pass, then the mark pass
    .venv/bin/python bench/video.py --policy my.yaml      # other models (e.g. a GPU adapter)
    .venv/bin/python bench/video.py --backend ray         # the models on Ray Serve (a local cluster)

With `--backend ray` the CPU column adds the Ray cluster's processes (model workers, proxy, controller)
to this process's, so both backends are compared on the whole work; the floor is measured the same way.

CPU time is reported beside wall time because on a shared machine the wall clock also counts
other people's work; the ratio of CPU times is the steadier figure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import av

REPO = Path(__file__).resolve().parents[1]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], Any], extra_cpu: Callable[[], float] | None = None) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process (+ `extra_cpu`'s, e.g. a Ray cluster), result)."""
    more = extra_cpu or (lambda: 0.0)
    c0, e0, w0 = cpu_s(), more(), time.perf_counter()
    result = fn()
    return time.perf_counter() - w0, cpu_s() - c0 + more() - e0, result


def floor(src: Path, dst: Path, crf: int, preset: str) -> int:
    """Plain decode + encode with PyAV: what any re-encoding release costs at minimum."""
    frames = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        vin = inp.streams.video[0]
        vin.codec_context.thread_type = "AUTO"
        ain = inp.streams.audio[0] if inp.streams.audio else None
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        vout.options = {"crf": str(crf), "preset": preset}
        aout = out.add_stream_from_template(ain) if ain is not None else None
        for packet in inp.demux([s for s in (vin, ain) if s is not None]):
            if aout is not None and packet.stream.type == "audio":
                if packet.dts is not None:
                    packet.stream = aout
                    out.mux(packet)
                continue
            for decoded in packet.decode():
                frame = cast(av.VideoFrame, decoded)
                frame.pict_type = av.video.frame.PictureType.NONE
                out.mux(vout.encode(frame))
                frames += 1
        out.mux(vout.encode(None))
    return frames


def reencode(data: bytes, dst: Path, bitrate: int) -> None:
    with av.open(io.BytesIO(data), "r") as inp, av.open(str(dst), "w", format="mp4") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        vout.bit_rate = bitrate
        vout.options = {"preset": "veryfast"}
        for frame in inp.decode(vin):
            frame.pict_type = av.video.frame.PictureType.NONE
            out.mux(vout.encode(frame))
        out.mux(vout.encode(None))


def policy_text(args: argparse.Namespace) -> str:
    base = (Path(args.policy) if args.policy else REPO / "policies" / "default.yaml").read_text()
    video = {"sample_fps": args.sample_fps, "crf": args.crf, "preset": args.preset,
             "overlap": not args.sequential, "max_bytes": 1 << 30, "max_seconds": 3600}
    if args.strength is not None:
        video["watermark_strength"] = args.strength
    return base + "\nvideo: " + json.dumps(video) + "\n"


def run_job(tc: Any, key: str, data: bytes, action: str) -> dict[str, Any]:
    request = json.dumps({"use": "txt2video", "action": action})
    resp = tc.post("/v1/jobs", headers={"Authorization": f"Bearer {key}"}, data={"request": request},
                   files=[("media", ("clip.mp4", data, "video/mp4"))])
    if resp.status_code != 202:
        raise SystemExit(f"job refused: {resp.status_code} {resp.text}")
    job_id = resp.json()["job_id"]
    while True:
        answer = tc.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"})
        status: dict[str, Any] = answer.json()
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.25)  # a client's pace; polling faster would bill this process for the polls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--crf", type=int, default=23)
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--sample-fps", type=float, default=2.0)
    parser.add_argument("--strength", type=float, default=None,
                        help="video watermark strength (default: the policy default)")
    parser.add_argument("--sequential", action="store_true", help="analyse, then mark (no shared pass)")
    parser.add_argument("--policy", default=None,
                        help="a policy file to use instead of policies/default.yaml (e.g. with GPU model "
                        "adapters; the video section is appended)")
    parser.add_argument("--backend", choices=["inprocess", "ray"], default="inprocess",
                        help="where the models run: in this process, or on Ray Serve deployments")
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.settings import Settings
    from gateway.video.sampling import sample_frames
    from gateway.video.testing import make_test_video
    from gateway.video.watermark import VideoWatermarker

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        s = args.seconds
        segments = [("astronaut", 0.0, s * 0.3, "pan_zoom"), ("coffee", s * 0.3, s * 0.5, "zoom"),
                    ("grace_hopper", s * 0.5, s * 0.8, "pan"), ("chelsea", s * 0.8, s, "pan")]
        rendered, _, src = timed(lambda: make_test_video(work / "src.mp4", segments, fps=args.fps,
                                                         size=(args.width, args.height), crf=18))
        data = src.read_bytes()
        print(f"clip: {s:.0f} s {args.width}x{args.height}@{args.fps}, {len(data) / 1e6:.1f} MB, "
              f"rendered in {rendered:.1f} s")
        floor_wall, floor_cpu, _ = timed(lambda: floor(src, work / "floor.mp4", args.crf, args.preset))

        (work / "policies").mkdir()
        (work / "policies" / "default.yaml").write_text(policy_text(args))
        backend: dict[str, Any] = {}
        with contextlib.ExitStack() as stack:
            extra_cpu = None
            if args.backend == "ray":  # a local cluster with the workers of deploy/ray/models.yaml
                from classifiers.rayserve.cluster import LocalCluster

                cluster = LocalCluster(num_cpus=os.cpu_count() or 2)
                stack.callback(cluster.stop)
                cluster.start()
                cluster.deploy(REPO / "deploy" / "ray" / "models.yaml")
                backend = {"model_backend": "ray", "ray_address": cluster.serve_url}
                extra_cpu = cluster.cpu_seconds
            settings = Settings(data_dir=work / "data", policies_dir=work / "policies",
                                max_upload_bytes=1 << 30, extra={"jobs_poll_s": "0.02"}, **backend)
            tc = stack.enter_context(TestClient(create_app(settings)))
            gw = tc.app.state.gateway  # type: ignore[attr-defined]
            if gw.policies.active is None:
                raise SystemExit(f"the policy did not load: {gw.policies.last_error}")
            key = gw.apikeys.create("bench", "generator")[1]
            warm = make_test_video(work / "warm.mp4", [("astronaut", 0, 1, None)], fps=args.fps,
                                   size=(args.width, args.height))
            run_job(tc, key, warm.read_bytes(), "check")  # first model calls allocate; not measured
            rows: dict[str, tuple[float, float]] = {}
            results: dict[str, dict[str, Any]] = {}
            for action in ("check", "release"):
                wall, cpu, status = timed(lambda a=action: run_job(tc, key, data, a), extra_cpu)  # type: ignore[misc]
                if status["state"] != "done":
                    raise SystemExit(f"{action} job failed: {status['error']}")
                rows[action], results[action] = (wall, cpu), status
            released = results["release"]
            if released["decision"]["decision"] != "allow":
                raise SystemExit(f"release was not allowed: {released['decision']['reasons']}")
            video = tc.get(released["result_url"], headers={"Authorization": f"Bearer {key}"}).content
            record = released["decision"]
        size_ratio = len(video) / (work / "floor.mp4").stat().st_size
        reencode(video, work / "lower.mp4", bitrate=int(len(video) * 8 / s / 2))
        found = VideoWatermarker().detect(f.rgb for f in sample_frames(work / "lower.mp4", fps=2.0))
        wm_id = int(record["outputs"][0]["watermark_id"].split(":")[1])

    def row(name: str, wall: float, cpu: float) -> str:
        return (f"{name:<26} wall {wall:7.2f} s ({wall / floor_wall:4.2f}x floor, {wall / s:4.2f}x real time)"
                f"   cpu {cpu:7.2f} s ({cpu / floor_cpu:4.2f}x floor)")

    sampling = record["video"][0]["sampling"]
    where = "on Ray Serve (cpu: this process + the cluster)" if args.backend == "ray" else "in-process"
    print(f"models ({where}): {', '.join(m['name'] for m in gw.pool.loaded())}; {sampling['frames']} sampled frames, "
          f"{len(record['findings']['faces'])} faces; pass: {'sequential' if args.sequential else 'shared'}")
    print(row("floor (decode + encode)", floor_wall, floor_cpu))
    print(row("check job", *rows["check"]))
    print(row("release job", *rows["release"]))
    out = record["video"][0]["output"]
    print(f"output: {out['frame_count']} frames, {out['duration_s']:.2f} s, audio {out['audio']}, "
          f"watermark strength {out['watermark']['strength']}; size vs floor {size_ratio:.2f}; "
          f"watermark after a half-bitrate re-encode: {'decoded' if found.wm_id == wm_id else 'NOT decoded'} "
          f"(score {found.score:.1f}, {found.frames_used} frames)")


if __name__ == "__main__":
    main()
