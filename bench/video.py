"""Why: the video path must stay near what decoding and encoding alone cost. This benchmark
renders a 720p30 clip (default 60 s; `--seconds` for quick runs), measures the floor in the same
run (PyAV decode + libx264 encode of the same clip, same preset and crf, no models, audio copied)
and then our two stages: sampling + analysis (open_nsfw and dlib when installed) and
mark + encode. It prints each time, its ratio to the floor and to real time.

    .venv/bin/python bench/video.py --seconds 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import av

from gateway.video.analysis import analyze_video
from gateway.video.sampling import sample_frames
from gateway.video.testing import make_test_video
from gateway.video.transcode import mark_and_encode
from gateway.video.watermark import VideoWatermarker

WM_ID = 0x12_3456_789A


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


def _models() -> tuple[list[Any], Any, str]:
    try:
        from classifiers.registry import builtin_registry

        registry = builtin_registry(include_fakes=False)
        nsfw = [registry.create("nsfw", "opennsfw", {})]
        return nsfw, registry.create("face", "dlib", {}), "opennsfw + dlib"
    except Exception as exc:  # a bench must still run where the models are not installed
        return [], None, f"no models ({exc})"


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
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        s = args.seconds
        segments = [("astronaut", 0.0, s * 0.3, "pan_zoom"), ("coffee", s * 0.3, s * 0.5, "zoom"),
                    ("grace_hopper", s * 0.5, s * 0.8, "pan"), ("chelsea", s * 0.8, s, "pan")]
        t0 = time.perf_counter()
        size = (args.width, args.height)
        src = make_test_video(work / "src.mp4", segments, fps=args.fps, size=size, crf=18)
        rendered = time.perf_counter() - t0
        print(f"clip: {s:.0f} s {args.width}x{args.height}@{args.fps}, rendered in {rendered:.1f} s")

        t0 = time.perf_counter()
        floor(src, work / "floor.mp4", args.crf, args.preset)
        t_floor = time.perf_counter() - t0

        nsfw, face, label = _models()
        t0 = time.perf_counter()
        facts = analyze_video(src, nsfw_models=nsfw, face_analyzer=face, fps=args.sample_fps)
        t_analysis = time.perf_counter() - t0

        t0 = time.perf_counter()
        info = mark_and_encode(src, work / "marked.mp4", WM_ID, crf=args.crf, preset=args.preset)
        t_mark = time.perf_counter() - t0

        found = VideoWatermarker().detect(f.rgb for f in sample_frames(work / "marked.mp4", fps=1.0))
        sizes = (work / "floor.mp4").stat().st_size, (work / "marked.mp4").stat().st_size

    def row(name: str, seconds: float) -> str:
        ratio, realtime = seconds / t_floor, seconds / s
        return f"{name:<28} {seconds:7.2f} s   {ratio:5.2f}x floor   {realtime:5.2f}x real time"

    print(f"models: {label}; {len(facts.frames)} sampled frames, {len(facts.faces)} faces")
    print(row("floor (decode + encode)", t_floor))
    print(row("sampling + analysis", t_analysis))
    print(row("mark + encode", t_mark))
    print(row("release (both)", t_analysis + t_mark))
    print(f"output: {info.frame_count} frames, {info.duration_s:.2f} s, audio {info.audio}; "
          f"size vs floor {sizes[1] / sizes[0]:.3f}; watermark decoded: {found.wm_id == WM_ID} "
          f"(score {found.score:.1f}, {found.frames_used} frames)")


if __name__ == "__main__":
    main()
