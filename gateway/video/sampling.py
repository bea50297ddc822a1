"""Why: models cannot look at every frame of a video, and they need not: content changes at a
limited rate, except at scene cuts. But an uploader who knows *which* frames are looked at can
hide content between them, so three things decide which frames the models see:

* **a regular grid** at a policy-set rate (default 2 fps) whose **phase is random per job**
  (`phase_from_seed`: the seed is drawn from the operating system's CSPRNG and recorded in the
  decision record, so the run can be replayed but not predicted);
* **scene cuts**: the first frame after a cut. Cut detection works on a subsampled luma
  thumbnail of every frame: the mean of (a) the total variation distance between 32-bin
  histograms and (b) twice the mean absolute difference of 16x9 block means (clipped to 1),
  against the previous frame. Panning and zooming keep both small (< 0.1 measured), a cut moves
  both (0.4-0.55);
* **change since the last analysed frame** (`change_score`): the same two terms on the *colour*
  thumbnails (Y, U and V; 16-bin histograms per plane), against the last frame the models saw,
  not the previous one. A cross-fade moves each frame only a little from the one before (a cut
  detector never fires), but it drifts away from the last analysed frame: coffee -> astronaut
  scores 0.11 / 0.18 / 0.25 / 0.31 / 0.37 at 20 / 40 / 60 / 80 / 100 % of the fade, while half
  a second of the test clips' pans and zooms drifts by at most 0.03 (measured on 320x240).
  The default `change_threshold` 0.15 therefore forces analysis at ~40 % of a cross-fade and
  again once it completes. Its limit: the score is global, so a small region that changes (a
  face of a few percent of the frame pasted in for a few frames) stays under it; the random
  phase is what makes such inserts a gamble for the uploader.

`summarise` turns per-sample scores into what the decision record keeps per label: the maximum
score, when it happened, and the time ranges over threshold.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import av
import cv2
import numpy as np

from gateway.video.intake import decode_errors, open_video

__all__ = [
    "DEFAULT_CHANGE_THRESHOLD", "DEFAULT_SCENE_CUT_THRESHOLD", "LabelSummary", "SampleReason", "SampledFrame",
    "Sampler", "change_score", "cut_score", "new_seed", "phase_from_seed", "sample_frames", "stream_duration",
    "summarise", "target_size",
]

DEFAULT_SCENE_CUT_THRESHOLD = 0.3
DEFAULT_CHANGE_THRESHOLD = 0.15
_BINS = 32
_COLOUR_BINS = 16
SampleReason = Literal["first", "grid", "cut", "change"]
_EIGHT_BIT_YUV = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12"})


@dataclass(frozen=True)
class SampledFrame:
    """`index`: 0-based frame number in presentation order; `t`: seconds since the first frame;
    `rgb`: uint8 (H, W, 3), downscaled so the long side is at most `max_side`; `reason`: why it
    was picked (the first frame, the regular grid, a scene cut, or a change since the last
    analysed frame; a frame that is both on the grid and a cut says "cut")."""

    index: int
    t: float
    rgb: np.ndarray
    is_scene_cut: bool
    reason: SampleReason = "grid"


LabelSummary = dict[str, object]  # {"max": float, "max_t": float | None, "ranges": [[t0, t1], ...]}


def _signature(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray]:
    """(normalised luma histogram, 16x9 block means in [0, 1]) of a frame."""
    thumb: np.ndarray
    if frame.format.name in _EIGHT_BIT_YUV:
        plane = frame.planes[0]
        y = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
        step = max(1, min(frame.width, frame.height) // 64)
        thumb = y[: frame.height : step, : frame.width : step]
    else:
        thumb = np.asarray(frame.to_ndarray(format="gray", width=64, height=36), dtype=np.uint8)
    hist = np.bincount((thumb >> 3).ravel(), minlength=_BINS).astype(np.float64)
    blocks = cv2.resize(np.ascontiguousarray(thumb), (16, 9), interpolation=cv2.INTER_AREA)
    return hist / max(hist.sum(), 1.0), blocks.astype(np.float64) / 255.0


def _colour_signature(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray]:
    """(Y, U, V 16-bin histograms, each normalised, concatenated and averaged; 3x9x16 block
    means in [0, 1]) of a frame, from strided views of its planes (no conversion for 8-bit YUV)."""
    planes: list[np.ndarray]
    if frame.format.name in _EIGHT_BIT_YUV and frame.format.name != "nv12":
        planes = []
        step = max(1, min(frame.width, frame.height) // 64)
        for i, plane in enumerate(frame.planes[:3]):
            full = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
            w, h = (frame.width, frame.height) if i == 0 else (plane.width, plane.height)
            sub = max(1, round(step * w / frame.width))
            planes.append(full[:h:sub, :w:sub])
    else:
        rgb = np.asarray(frame.to_ndarray(format="rgb24", width=64, height=36), dtype=np.uint8)
        yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)
        planes = [np.ascontiguousarray(yuv[:, :, i]) for i in range(3)]
    shift = 8 - int(np.log2(_COLOUR_BINS))
    hist = np.concatenate([np.bincount((p >> shift).ravel(), minlength=_COLOUR_BINS) / max(p.size, 1)
                           for p in planes]) / 3.0
    blocks = np.stack([cv2.resize(np.ascontiguousarray(p), (16, 9), interpolation=cv2.INTER_AREA) for p in planes])
    return hist, blocks.astype(np.float64) / 255.0


def _signatures(frame: av.VideoFrame, colour: bool) -> tuple[tuple[np.ndarray, np.ndarray],
                                                             tuple[np.ndarray, np.ndarray] | None]:
    """`_signature(frame)` and (when `colour`) `_colour_signature(frame)`, equal to what each gives
    alone, with the luma work done once for planar 8-bit YUV: both read the same strided Y
    thumbnail, the colour signature's 16-bin Y histogram is the 32-bin one with its bins paired
    (the same integer counts), and its Y block means are the luma signature's."""
    if not colour:
        return _signature(frame), None
    if frame.format.name not in _EIGHT_BIT_YUV or frame.format.name == "nv12":
        return _signature(frame), _colour_signature(frame)
    step = max(1, min(frame.width, frame.height) // 64)
    thumbs = []
    for i, plane in enumerate(frame.planes[:3]):
        full = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
        w, h = (frame.width, frame.height) if i == 0 else (plane.width, plane.height)
        sub = step if i == 0 else max(1, round(step * w / frame.width))
        thumbs.append(full[:h:sub, :w:sub])
    y = thumbs[0]
    counts = np.bincount((y >> 3).ravel(), minlength=_BINS)
    y_blocks = cv2.resize(np.ascontiguousarray(y), (16, 9), interpolation=cv2.INTER_AREA)
    hist32 = counts.astype(np.float64)
    luma = (hist32 / max(hist32.sum(), 1.0), y_blocks.astype(np.float64) / 255.0)
    shift = 8 - int(np.log2(_COLOUR_BINS))
    pair = _BINS // _COLOUR_BINS
    hists = [counts.reshape(_COLOUR_BINS, pair).sum(axis=1) / max(y.size, 1)]
    hists += [np.bincount((p >> shift).ravel(), minlength=_COLOUR_BINS) / max(p.size, 1) for p in thumbs[1:]]
    blocks = np.stack([y_blocks] + [cv2.resize(np.ascontiguousarray(p), (16, 9), interpolation=cv2.INTER_AREA)
                                    for p in thumbs[1:]])
    return luma, (np.concatenate(hists) / 3.0, blocks.astype(np.float64) / 255.0)


def change_score(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """How far frame b's colour signature is from frame a's (0 = same, 1 = nothing alike)."""
    return cut_score(a, b)


def new_seed() -> str:
    """A fresh sampling seed (64 bits from the OS CSPRNG, hex): recorded, never predictable."""
    return secrets.token_hex(8)


def phase_from_seed(seed: str | None, interval: float) -> float:
    """The regular grid's offset in [0, interval) seconds for a recorded seed (None: 0)."""
    if not seed:
        return 0.0
    if len(seed) > 16 or any(c not in "0123456789abcdefABCDEF" for c in seed):
        raise ValueError(f"a sampling seed is up to 16 hex digits, not {seed!r}")
    fraction = ((int(seed, 16) % (1 << 64)) >> 11) / float(1 << 53)  # 53 bits: exact in a float, < 1
    return min(fraction * interval, math.nextafter(interval, 0.0))


def cut_score(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    tvd = 0.5 * float(np.abs(a[0] - b[0]).sum())
    mad = min(1.0, 2.0 * float(np.abs(a[1] - b[1]).mean()))
    return 0.5 * (tvd + mad)


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale)), max(2, round(height * scale))


class Sampler:
    """The sampling decision for one stream, frame by frame: offer every decoded frame in order
    and get back a `SampledFrame` for those the models should see (the first frame; one per
    1/fps seconds on a grid offset by `phase` seconds; the first frame of every scene; and any
    frame whose colour signature moved `change_threshold` or more from the last analysed frame —
    None turns that detector off). Shared by `sample_frames` and the single-pass engine
    (`gateway.video.engine`), so both sample identically."""

    def __init__(self, fps: float, size: tuple[int, int],
                 scene_cut_threshold: float = DEFAULT_SCENE_CUT_THRESHOLD, *, phase: float = 0.0,
                 change_threshold: float | None = DEFAULT_CHANGE_THRESHOLD) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.interval = 1.0 / fps
        if not 0.0 <= phase < self.interval + 1e-9:
            raise ValueError("phase must be in [0, 1/fps)")
        if change_threshold is not None and not 0.0 < change_threshold <= 1.0:
            raise ValueError("change_threshold must be in (0, 1]")
        self.size = size
        self.scene_cut_threshold = scene_cut_threshold
        self.change_threshold = change_threshold
        self.index = -1
        self._next_t = phase
        self._first_time: float | None = None
        self.last_t = 0.0
        self._previous: tuple[np.ndarray, np.ndarray] | None = None
        self._analysed: tuple[np.ndarray, np.ndarray] | None = None

    def time_of(self, frame: av.VideoFrame, index: int) -> float:
        """Seconds since the first frame (frame timestamps; the frame count when they are missing)."""
        raw_t = float(frame.time) if frame.time is not None else index * self.interval
        if self._first_time is None:
            self._first_time = raw_t
        return max(0.0, raw_t - self._first_time)

    def offer(self, frame: av.VideoFrame) -> SampledFrame | None:
        """The sample to show the models, or None; `last_t` is this frame's time either way."""
        self.index += 1
        t = self.last_t = self.time_of(frame, self.index)
        signature, colour = _signatures(frame, self.change_threshold is not None)
        cut = self._previous is not None and cut_score(self._previous, signature) >= self.scene_cut_threshold
        self._previous = signature
        reason: SampleReason | None = None
        if self.index == 0:
            reason = "first"
        elif cut:
            reason = "cut"
        elif t + 1e-6 >= self._next_t:
            reason = "grid"
        elif (colour is not None and self._analysed is not None
              and change_score(self._analysed, colour) >= cast(float, self.change_threshold)):
            reason = "change"
        if reason is None:
            return None
        while self._next_t <= t + 1e-6:
            self._next_t += self.interval
        self._analysed = colour
        rgb = frame.to_ndarray(format="rgb24", width=self.size[0], height=self.size[1], interpolation="AREA")
        return SampledFrame(index=self.index, t=round(t, 6), rgb=rgb, is_scene_cut=cut, reason=reason)


def stream_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    """The duration the container declares for `stream` (seconds; 0.0 when unknown)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return (container.duration or 0) / 1_000_000


def sample_frames(path: str | os.PathLike[str], fps: float = 2.0,
                  scene_cut_threshold: float = DEFAULT_SCENE_CUT_THRESHOLD, max_side: int = 1024,
                  progress: Callable[[float], None] | None = None, *, phase: float = 0.0,
                  change_threshold: float | None = DEFAULT_CHANGE_THRESHOLD) -> Iterator[SampledFrame]:
    """Yield the frames a `Sampler` picks: the first frame, one per 1/fps seconds (offset by
    `phase`), every frame that starts a new scene, and every frame that moved `change_threshold`
    from the last one yielded. Decoding errors raise VideoError (400)."""
    if fps <= 0:
        raise ValueError("fps must be positive")
    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        duration = stream_duration(container, stream)
        size = target_size(stream.codec_context.width, stream.codec_context.height, max_side)
        sampler = Sampler(fps, size, scene_cut_threshold, phase=phase, change_threshold=change_threshold)
        frames = container.decode(stream)
        while True:
            with decode_errors():
                frame = next(frames, None)
            if frame is None:
                break
            sample = sampler.offer(frame)
            if sample is None:
                continue
            if progress is not None and duration > 0:
                progress(min(1.0, sample.t / duration))
            yield sample
    if progress is not None:
        progress(1.0)


def summarise(per_frame_scores: Sequence[tuple[float, Mapping[str, float]]], thresholds: Mapping[str, float],
              frame_interval: float) -> dict[str, LabelSummary]:
    """Per label: {"max", "max_t", "ranges"}. Each sample at time t stands for the time up to the
    next sample (the last one for `frame_interval`), so samples that are not evenly spaced (a
    scene cut between two regular ones, frame times that do not fall on the sampling grid)
    still give contiguous ranges; consecutive over-threshold spans merge into one range
    [t0, t1]. Labels with a threshold but no score get max 0.0, max_t None and no ranges."""
    ordered = sorted(per_frame_scores, key=lambda item: item[0])
    labels = sorted({label for _, scores in ordered for label in scores} | set(thresholds))
    out: dict[str, LabelSummary] = {}
    for label in labels:
        best, best_t = 0.0, None
        ranges: list[list[float]] = []
        threshold = thresholds.get(label)
        scored = [(t, float(scores[label])) for t, scores in ordered if label in scores]
        for i, (t, score) in enumerate(scored):
            if best_t is None or score > best:
                best, best_t = score, t
            if threshold is None or score < threshold:
                continue
            end = scored[i + 1][0] if i + 1 < len(scored) else t + frame_interval
            if ranges and t <= ranges[-1][1] + 1e-6:
                ranges[-1][1] = max(ranges[-1][1], end)
            else:
                ranges.append([t, end])
        out[label] = {"max": best, "max_t": best_t, "ranges": [[round(a, 6), round(b, 6)] for a, b in ranges]}
    return out
