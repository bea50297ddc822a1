"""Why: a release used to decode its video twice — once to sample frames for the models, once
to mark and encode — and ran the models and the encoder one after the other. This engine
decodes once and hands each frame to the consumers a caller asks for:

* a **sampler** (`SamplerSpec`): the frames the models should see (`sampling.Sampler`: a rate
  on a per-job random phase, the first frame of every scene, and frames that changed since the
  last analysed one), delivered in batches to a callback on a **separate
  thread**, so the models (ONNX Runtime, dlib) run while FFmpeg decodes and x264 encodes;
* a **marker** (`MarkSpec`): every frame watermarked and encoded to H.264 MP4, audio copied or
  re-encoded (`transcode.MarkedOutput`).

Either or both. With both, marking is *speculative*: the caller decides after the pass and
throws the file away unless the decision allows it; `stop_marking` abandons the encode early
(e.g. as soon as the frames seen so far already make the decision a deny). Nothing here
decides anything.

Failure contract: undecodable input raises `VideoError` (400); an exception in the batch
callback is re-raised in the caller's thread; `should_stop()` returning True raises
`PassCancelled`. In every failure case the half-written output is deleted and the worker
thread is stopped before the exception leaves `run_pass`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import av

from gateway.video.errors import PassCancelled
from gateway.video.intake import decode_errors, open_video
from gateway.video.sampling import (
    DEFAULT_CHANGE_THRESHOLD,
    DEFAULT_SCENE_CUT_THRESHOLD,
    SampledFrame,
    Sampler,
    stream_duration,
    target_size,
)
from gateway.video.transcode import MarkedOutput, OutputInfo
from gateway.video.watermark import FrameMarker, VideoWatermarker

__all__ = ["MarkSpec", "PassCancelled", "PassResult", "SamplerSpec", "mark_and_encode", "run_pass"]


@dataclass(frozen=True)
class SamplerSpec:
    """Which frames the models see and how they get them. `on_batch` runs on the engine's
    worker thread with up to `batch_size` frames at a time, in order. By default it waits for
    full batches; `eager` starts as soon as `EAGER_MIN` frames are queued (taking all that are,
    up to `batch_size`), so the models keep pace with the decoder instead of running at the end
    (use it when the same pass also encodes: on 10 s of 720p, full batches of 16 left the
    models' work to the tail of the pass, and batches of 1 cost ~1.5 s more CPU in ONNX
    Runtime's spinning thread pools)."""

    on_batch: Callable[[Sequence[SampledFrame]], None]
    fps: float = 2.0
    scene_cut_threshold: float = DEFAULT_SCENE_CUT_THRESHOLD
    phase: float = 0.0  # seconds: the regular grid's offset (`sampling.phase_from_seed`)
    change_threshold: float | None = DEFAULT_CHANGE_THRESHOLD  # None: no change detector
    max_side: int = 1024
    batch_size: int = 16
    eager: bool = False


@dataclass(frozen=True)
class MarkSpec:
    """Where and how to write the output; `watermarker=None` transcodes without a mark."""

    dst_path: str | os.PathLike[str]
    watermarker: FrameMarker | None
    crf: int = 23
    preset: str = "veryfast"
    threads: int = 0


@dataclass(frozen=True)
class PassResult:
    """`output` is None when no marker was asked for or marking was stopped (file deleted)."""

    frames: int
    sampled: int
    duration_s: float
    width: int
    height: int
    output: OutputInfo | None


_END = object()
EAGER_MIN = 4


class _BatchWorker:
    """A bounded queue and one thread that calls `on_batch` with batches of sampled frames.
    The queue bound is the back-pressure: decoding waits when the models fall behind."""

    def __init__(self, spec: SamplerSpec, should_stop: Callable[[], bool] | None) -> None:
        self.spec = spec
        self.should_stop = should_stop
        self._wait_for = min(EAGER_MIN, spec.batch_size) if spec.eager else spec.batch_size
        self.queue: queue.Queue[object] = queue.Queue(maxsize=max(2, 2 * spec.batch_size))
        self.error: BaseException | None = None
        self.processed_t = 0.0
        self._abandon = threading.Event()
        self.thread = threading.Thread(target=self._run, name="video-models", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        batch: list[SampledFrame] = []
        try:
            while True:
                item = self.queue.get()
                if self._abandon.is_set():
                    return
                if item is _END:
                    if batch:
                        self._flush(batch)
                    return
                batch.append(cast(SampledFrame, item))
                ended = False
                while self.spec.eager and len(batch) < self.spec.batch_size:
                    try:
                        more = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _END:
                        ended = True
                        break
                    batch.append(cast(SampledFrame, more))
                if ended or len(batch) >= self._wait_for:
                    self._flush(batch)
                    batch = []
                if ended:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread by `check`
            self.error = exc
            self._abandon.set()
            self._drain()

    def _flush(self, batch: list[SampledFrame]) -> None:
        self.spec.on_batch(batch)
        self.processed_t = batch[-1].t

    def _drain(self) -> None:
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return

    def check(self) -> None:
        if self.error is not None:
            raise self.error
        if self.should_stop is not None and self.should_stop():
            raise PassCancelled("the pass was asked to stop")

    def put(self, sample: SampledFrame) -> None:
        while True:
            self.check()
            try:
                self.queue.put(sample, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        while self.thread.is_alive():
            try:
                self.queue.put(_END, timeout=0.1)
                break
            except queue.Full:
                self.check()
        while self.thread.is_alive():  # the models finish the last batches
            self.thread.join(0.1)
            self.check()
        if self.error is not None:
            raise self.error

    def abandon(self) -> None:
        self._abandon.set()
        self._drain()
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(_END)
        self.thread.join(timeout=2)  # a model call in progress finishes on its own (daemon thread)


class _Progress:
    def __init__(self, report: Callable[[float], None] | None, duration: float) -> None:
        self.report = report
        self.duration = duration
        self.next = 0.0

    def at(self, done_t: float) -> None:
        if self.report is None or self.duration <= 0:
            return
        done = min(1.0, done_t / self.duration)
        if done >= self.next:
            self.report(done)
            self.next = done + 0.01


def run_pass(src_path: str | os.PathLike[str], *, sampler: SamplerSpec | None = None,
             mark: MarkSpec | None = None, progress: Callable[[float], None] | None = None,
             should_stop: Callable[[], bool] | None = None,
             stop_marking: threading.Event | None = None) -> PassResult:
    """Decode `src_path` once, feeding the sampler and/or the marker (see the module docstring).
    `progress` gets fractions in [0, 1], non-decreasing, ending with 1.0; with a sampler, the
    fraction counts frames the models have finished, not just frames decoded."""
    if sampler is None and mark is None:
        raise ValueError("run_pass needs a sampler, a marker or both")
    if sampler is not None and sampler.batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if mark is not None and mark.watermarker is not None and mark.watermarker.wm_id is None:
        raise ValueError("the watermarker has no wm_id: it can detect but not mark")
    with open_video(src_path) as inp:
        if not inp.streams.video:
            raise ValueError("no video stream")
        vin = inp.streams.video[0]
        vin.codec_context.thread_type = "AUTO"
        vin.codec_context.thread_count = mark.threads if mark is not None else 0
        ain = inp.streams.audio[0] if (mark is not None and inp.streams.audio) else None
        width, height = vin.codec_context.width, vin.codec_context.height
        duration = stream_duration(inp, vin)
        picker = None
        if sampler is not None:
            size = target_size(width, height, sampler.max_side)
            picker = Sampler(sampler.fps, size, sampler.scene_cut_threshold, phase=sampler.phase,
                             change_threshold=sampler.change_threshold)
        worker = _BatchWorker(sampler, should_stop) if sampler is not None else None
        output: MarkedOutput | None = None
        try:
            if mark is not None:
                output = MarkedOutput(mark.dst_path, vin, ain, mark.watermarker, crf=mark.crf,
                                      preset=mark.preset, threads=mark.threads)
            counts = _loop(inp, vin, ain, picker, worker, output, _Progress(progress, duration),
                           should_stop, stop_marking)
            if worker is not None:
                worker.finish()
            info = None
            if output is not None:
                if stop_marking is not None and stop_marking.is_set():
                    output.abort()
                else:
                    info = output.close()
                output = None
        except BaseException:
            if worker is not None:
                worker.abandon()
            if output is not None:
                output.abort()
            raise
    if progress is not None:
        progress(1.0)
    frames, sampled, last_t = counts
    return PassResult(frames=frames, sampled=sampled, duration_s=duration if duration > 0 else last_t,
                      width=width, height=height, output=info)


def _loop(inp: av.container.InputContainer, vin: av.VideoStream, ain: av.AudioStream | None,
          picker: Sampler | None, worker: _BatchWorker | None, output: MarkedOutput | None,
          progress: _Progress, should_stop: Callable[[], bool] | None,
          stop_marking: threading.Event | None) -> tuple[int, int, float]:
    frames = sampled = 0
    last_t = 0.0
    packets = inp.demux([vin] if ain is None else [vin, ain])
    first_time: float | None = None
    while True:
        with decode_errors():
            packet = next(packets, None)
        if packet is None:
            break
        if should_stop is not None and should_stop():
            raise PassCancelled("the pass was asked to stop")
        if worker is not None:
            worker.check()
        if ain is not None and isinstance(packet.stream, av.AudioStream):
            if output is not None and not (stop_marking is not None and stop_marking.is_set()):
                output.push_audio(cast("av.Packet[av.AudioStream]", packet))
            continue
        with decode_errors():
            decoded = packet.decode()
        for item in decoded:
            frame = cast(av.VideoFrame, item)
            frames += 1
            if picker is not None and worker is not None:
                sample = picker.offer(frame)
                last_t = picker.last_t
                if sample is not None:
                    sampled += 1
                    worker.put(sample)
            elif frame.time is not None:
                first_time = float(frame.time) if first_time is None else first_time
                last_t = max(0.0, float(frame.time) - first_time)
            if output is not None and not (stop_marking is not None and stop_marking.is_set()):
                output.push_video(frame)
            progress.at(min(last_t, worker.processed_t) if worker is not None else last_t)
    if frames == 0:
        raise ValueError("the video holds no frames")
    return frames, sampled, last_t


def mark_and_encode(src_path: str | os.PathLike[str], dst_path: str | os.PathLike[str], wm_id: int, *,
                    crf: int = 23, preset: str = "veryfast", progress: Callable[[float], None] | None = None,
                    watermarker: FrameMarker | None = None, threads: int = 0) -> OutputInfo:
    """Decode `src_path`, mark every frame with `wm_id`, write H.264 MP4 to `dst_path`.

    Raises VideoError (400) when the input does not decode; any other failure (the watermark,
    the encoder, the disk) propagates so the caller withholds the render (fail closed).
    `threads=0` lets FFmpeg pick decoder and encoder threads.
    """
    wm = watermarker or VideoWatermarker(wm_id)
    if wm.wm_id != wm_id:
        raise ValueError("the watermarker was built for another wm_id")
    result = run_pass(src_path, mark=MarkSpec(dst_path, wm, crf=crf, preset=preset, threads=threads),
                      progress=progress)
    assert result.output is not None  # nothing asked to stop marking
    return result.output
