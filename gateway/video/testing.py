"""Why: video tests (ours and the API's) need real, small, deterministic videos with known
content at known times — a face from t0 to t1, a scene cut, an audio track — without shipping
media files. This module renders them from the benign images that ship inside packages.

Sources: "astronaut" and "grace_hopper" (real faces), "coffee" and "chelsea" (no faces),
"black", "gray" and "red" (flat frames; the `fake` NSFW adapter scores red as unsafe).
`make_frames_video` takes any frame function; `crossfade_between_samples` and
`flash_between_samples` are the clips that hide a face between the regular samples (tests of
the sampler's random phase and change detector).
Motion: None (static), "pan" (a window at 80 % scale sliding left to right), "zoom" (1.0 → 0.6
around the point of interest: the face, if any), "pan_zoom" (zoom plus a small pan around the
point of interest). Portraits keep their face in view in every motion.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import cv2
import numpy as np

if TYPE_CHECKING:
    import av

__all__ = ["Segment", "crossfade_between_samples", "flash_between_samples", "load_source", "make_frames_video",
           "make_test_video", "render_frame"]

Segment = tuple[str, float, float, str | None]  # (source, t0, t1, motion)
Container = Literal["mp4", "mov", "webm"]

# Point of interest (x, y) as fractions of the image: the face for portraits.
_POI: dict[str, tuple[float, float]] = {
    "astronaut": (0.42, 0.22),
    "grace_hopper": (0.48, 0.40),
}
_MOTIONS = (None, "pan", "zoom", "pan_zoom")


def load_source(name: str) -> np.ndarray:
    """The RGB uint8 image behind a source name."""
    if name in ("astronaut", "coffee", "chelsea"):
        import skimage.data

        return np.ascontiguousarray(getattr(skimage.data, name)()[:, :, :3])
    if name == "grace_hopper":
        import matplotlib

        path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(path)
        return np.ascontiguousarray(bgr[:, :, ::-1])
    if name == "black":
        return np.zeros((64, 64, 3), np.uint8)
    if name == "gray":
        return np.full((64, 64, 3), 128, np.uint8)
    if name == "red":  # what the `fake` NSFW adapter scores as unsafe (tests of the unsafe path)
        return np.full((64, 64, 3), (255, 0, 0), np.uint8)
    raise ValueError(f"unknown test video source {name!r}")


def render_frame(image: np.ndarray, size: tuple[int, int], motion: str | None, u: float,
                 poi: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    """One RGB frame of `size` (w, h) showing `image` at progress `u` in [0, 1] of a motion."""
    if motion not in _MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; use one of {_MOTIONS}")
    w, h = size
    ih, iw = image.shape[:2]
    aspect = w / h
    base_w = min(iw, ih * aspect)
    scale = 1.0
    if motion in ("pan", "pan_zoom"):
        scale = 0.8
    if motion in ("zoom", "pan_zoom"):
        scale *= 1.0 - 0.4 * u
    win_w = base_w * scale
    win_h = win_w / aspect
    if motion == "pan":
        cx = win_w / 2 + (iw - win_w) * u
    elif motion == "pan_zoom":  # a small pan around the point of interest: the face stays in view
        cx = (poi[0] + 0.12 * (u - 0.5)) * iw
    else:
        cx = poi[0] * iw
    cy = poi[1] * ih
    x0 = min(max(cx - win_w / 2, 0.0), iw - win_w)
    y0 = min(max(cy - win_h / 2, 0.0), ih - win_h)
    s = win_w / w
    matrix = np.array([[s, 0.0, x0], [0.0, s, y0]], dtype=np.float64)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(image, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT)


def _video_codec(container: Container, codec: str | None) -> str:
    if codec:
        return codec
    return "libvpx" if container == "webm" else "libx264"


def _audio_codec(container: Container, codec: str | None) -> str:
    if codec:
        return codec
    return "libopus" if container == "webm" else "aac"


def make_test_video(path: str | os.PathLike[str], segments: Sequence[Segment], *, fps: int = 15,
                    size: tuple[int, int] = (320, 240), audio_tone_hz: float | None = 440.0,
                    container: Container = "mp4", video_codec: str | None = None,
                    audio_codec: str | None = None, crf: int = 20) -> Path:
    """Render `segments` into a video file and return its path.

    Frames outside every segment are black; the duration is the largest segment end. Video:
    H.264 (MP4/MOV) or VP8 (WebM) unless `video_codec` says otherwise; audio: a sine tone at
    `audio_tone_hz` (AAC, or Opus in WebM), or no audio track when None.
    """
    if not segments:
        raise ValueError("need at least one segment")
    w, h = size
    if w % 2 or h % 2:
        raise ValueError("width and height must be even")
    duration = max(seg[2] for seg in segments)
    n_frames = int(round(duration * fps))
    import av  # here, not at the top: rendering frames (render_frame) needs no PyAV

    sources = {name: load_source(name) for name, *_ in segments}
    out_path = Path(path)
    with av.open(str(out_path), "w", format=container) as out:
        vcodec = _video_codec(container, video_codec)
        vs = cast(av.VideoStream, out.add_stream(vcodec, rate=fps))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if vcodec == "libx264":
            vs.options = {"crf": str(crf), "preset": "ultrafast"}
        elif vcodec == "libx265":
            vs.options = {"crf": str(crf), "preset": "ultrafast", "x265-params": "log-level=error"}
        elif vcodec.startswith("libvpx"):
            vs.options = {"deadline": "realtime", "cpu-used": "8", "crf": str(crf + 10), "b": "2M"}
        astream: av.AudioStream | None = None
        if audio_tone_hz is not None:
            astream = cast(av.AudioStream, out.add_stream(_audio_codec(container, audio_codec), rate=48000))
            astream.layout = "mono"
        for i in range(n_frames):
            t = i / fps
            rgb = np.zeros((h, w, 3), np.uint8)
            for name, t0, t1, motion in segments:
                if t0 <= t < t1:
                    u = (t - t0) / max(t1 - t0, 1e-9)
                    rgb = render_frame(sources[name], size, motion, u, _POI.get(name, (0.5, 0.5)))
                    break
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
        if astream is not None and audio_tone_hz is not None:
            _write_tone(out, astream, audio_tone_hz, duration)
    return out_path


def _write_tone(out: av.container.OutputContainer, stream: av.AudioStream, hz: float,
                duration: float) -> None:
    import av

    rate = 48000
    chunk = stream.codec_context.frame_size or 1024
    total = int(duration * rate)
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        t = (np.arange(start, start + n) / rate).astype(np.float64)
        samples = (0.3 * np.sin(2 * math.pi * hz * t)).astype(np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def make_frames_video(path: str | os.PathLike[str], frame_at: Callable[[int], np.ndarray], n_frames: int, *,
                      fps: int = 30, crf: int = 18) -> Path:
    """An H.264 MP4 (no audio) of `n_frames` frames, frame i being `frame_at(i)` (RGB uint8, even size)."""
    import av

    first = frame_at(0)
    h, w = first.shape[:2]
    if w % 2 or h % 2:
        raise ValueError("width and height must be even")
    out_path = Path(path)
    with av.open(str(out_path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": str(crf), "preset": "ultrafast"}
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(first if i == 0 else frame_at(i), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    return out_path


def _still(name: str, size: tuple[int, int]) -> np.ndarray:
    return render_frame(load_source(name), size, None, 0.0, _POI.get(name, (0.5, 0.5)))


def crossfade_between_samples(path: str | os.PathLike[str], *, seconds: float = 6.0, fps: int = 30,
                              grid_fps: float = 2.0, fade_frames: int = 5, face: str = "astronaut",
                              cover: str = "coffee", size: tuple[int, int] = (320, 240)) -> Path:
    """`cover` exactly on every point of a `grid_fps` grid of phase 0 (frames 0, 15, 30, … at
    30 fps and 2 fps), and `face` cross-faded in and out between them: `fade_frames` frames of
    fade in, full `face` in between, `fade_frames` frames of fade out ending on `cover` one
    frame before the next grid point. A sampler on that grid without a change detector sees
    only `cover`."""
    period = round(fps / grid_fps)
    if period < 2 * fade_frames + 2:
        raise ValueError("the grid period is too short for two fades")
    a, b = _still(cover, size).astype(np.float32), _still(face, size).astype(np.float32)

    def alpha(k: int) -> float:
        if k == 0:
            return 0.0
        if k <= fade_frames:
            return k / fade_frames
        fade_out_from = period - 1 - fade_frames  # alpha 1 here, 0 at period - 1
        return 1.0 if k < fade_out_from else (period - 1 - k) / fade_frames

    def frame_at(i: int) -> np.ndarray:
        x = alpha(i % period)
        return np.clip(np.rint(a * (1.0 - x) + b * x), 0, 255).astype(np.uint8)

    return make_frames_video(path, frame_at, int(round(seconds * fps)), fps=fps)


def flash_between_samples(path: str | os.PathLike[str], frames: Sequence[int], *, seconds: float = 3.0,
                          fps: int = 30, face: str = "astronaut", cover: str = "coffee",
                          size: tuple[int, int] = (320, 240)) -> Path:
    """`cover` throughout, except `face` on the given frame indices (hard cuts in and out)."""
    a, b = _still(cover, size), _still(face, size)
    shown = set(frames)
    return make_frames_video(path, lambda i: b if i in shown else a, int(round(seconds * fps)), fps=fps)
