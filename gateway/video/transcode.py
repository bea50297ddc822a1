"""Why: an allowed video leaves the gateway marked, and marking means re-encoding. This module
does it in a single pass — decode, mark the Y plane, encode — so the cost stays near the floor
of a plain decode + encode.

Output contract (whatever the input container): MP4 with H.264 video (libx264, yuv420p, the
input's frame timestamps so the same frame rate, quality set by `crf` and `preset`; odd sizes
are scaled to the nearest even size below, which 4:2:0 requires) and the first audio track
kept: copied when MP4 can carry it as is (AAC, MP3), otherwise re-encoded to AAC. Other
streams (subtitles, data, extra audio tracks) and container metadata are dropped. The result is
ready for C2PA signing.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import av

from gateway.video.intake import decode_errors
from gateway.video.watermark import FrameMarker

__all__ = ["COPY_AUDIO_CODECS", "MarkedOutput", "OutputInfo"]

COPY_AUDIO_CODECS = frozenset({"aac", "mp3"})
AudioMode = Literal["copied", "aac"]


@dataclass(frozen=True)
class OutputInfo:
    frame_count: int
    duration_s: float
    fps: float
    audio: AudioMode | None
    width: int = 0
    height: int = 0


class _VideoPath:
    """Decoded frames in, marked and encoded packets out (one per output stream)."""

    def __init__(self, out: av.container.OutputContainer, vin: av.VideoStream,
                 watermarker: FrameMarker | None, crf: int, preset: str, threads: int) -> None:
        ctx = vin.codec_context
        self.width, self.height = ctx.width & ~1, ctx.height & ~1
        rate = vin.average_rate or vin.guessed_rate or Fraction(30)
        self.rate = Fraction(rate)
        self.stream = out.add_stream("libx264", rate=self.rate)
        self.stream.width, self.stream.height, self.stream.pix_fmt = self.width, self.height, "yuv420p"
        self.stream.options = {"crf": str(crf), "preset": preset}
        self.stream.codec_context.thread_count = threads
        self.time_base = 1 / self.rate  # output timestamps are frame slots at the input's rate
        self.stream.codec_context.time_base = self.time_base
        self.out = out
        self.wm = watermarker
        self.frames = 0
        self.first_pts: int | None = None
        self.last_pts: int | None = None

    def push(self, frame: av.VideoFrame) -> None:
        if frame.width != self.width or frame.height != self.height or frame.format.name != "yuv420p":
            frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        if self.wm is not None and self.wm.marks(self.frames):
            planes = frame.to_ndarray(format="yuv420p")
            planes[: self.height] = self.wm.mark_luma(planes[: self.height], self.frames)
            marked = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            if self.frames > 0 and self.wm.wants_reference(self.frames):
                marked.pict_type = av.video.frame.PictureType.P  # the mark asks for its change to be coded
        else:
            marked = frame
            marked.pict_type = av.video.frame.PictureType.NONE  # let x264 place keyframes
        pts = round(frame.time * self.rate) if frame.time is not None else (self.last_pts or -1) + 1
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1  # x264 needs strictly increasing timestamps
        marked.pts, marked.time_base = pts, self.time_base
        if self.first_pts is None:
            self.first_pts = pts
        self.last_pts = pts
        self.frames += 1
        self.out.mux(self.stream.encode(marked))

    def flush(self) -> None:
        self.out.mux(self.stream.encode(None))

    def duration_s(self) -> float:
        if self.first_pts is None or self.last_pts is None:
            return 0.0
        return float((self.last_pts - self.first_pts) * self.time_base) + float(1 / self.rate)


class _AudioPath:
    def __init__(self, out: av.container.OutputContainer, ain: av.AudioStream) -> None:
        self.out = out
        name = ain.codec_context.codec.canonical_name
        self.mode: AudioMode = "copied" if name in COPY_AUDIO_CODECS else "aac"
        if self.mode == "copied":
            self.stream: av.AudioStream = out.add_stream_from_template(ain)
        else:
            rate = ain.codec_context.sample_rate or 48_000
            self.stream = out.add_stream("aac", rate=rate)
            channels = ain.codec_context.channels or 1
            self.stream.layout = "stereo" if channels >= 2 else "mono"

    def push(self, packet: av.Packet[av.AudioStream]) -> None:
        if self.mode == "copied":
            if packet.dts is None:
                return  # the demuxer's flush packet
            packet.stream = self.stream
            self.out.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None  # let the encoder number samples; its fifo regroups frame sizes
            self.out.mux(self.stream.encode(frame))

    def flush(self) -> None:
        if self.mode == "aac":
            self.out.mux(self.stream.encode(None))


class MarkedOutput:
    """The output half of a release pass: an MP4 being written, fed decoded frames (marked here)
    and the input's audio packets. `close` finishes the file; `abort` abandons and deletes it."""

    def __init__(self, dst_path: str | os.PathLike[str], vin: av.VideoStream, ain: av.AudioStream | None,
                 watermarker: FrameMarker | None, *, crf: int, preset: str, threads: int) -> None:
        self.path = os.fspath(dst_path)
        self.out = av.open(self.path, "w", format="mp4")
        try:
            self.video = _VideoPath(self.out, vin, watermarker, crf, preset, threads)
            self.audio = _AudioPath(self.out, ain) if ain is not None else None
        except BaseException:
            self.abort()
            raise
        self._open = True

    def push_video(self, frame: av.VideoFrame) -> None:
        self.video.push(frame)

    def push_audio(self, packet: av.Packet[av.AudioStream]) -> None:
        if self.audio is not None:
            with decode_errors("audio"):
                self.audio.push(packet)

    def close(self) -> OutputInfo:
        self.video.flush()
        if self.audio is not None:
            self.audio.flush()
        self.out.close()
        self._open = False
        if self.video.frames == 0:
            raise ValueError("the video holds no frames")
        audio = self.audio.mode if self.audio is not None else None
        return OutputInfo(frame_count=self.video.frames, duration_s=self.video.duration_s(),
                          fps=float(self.video.rate), audio=audio, width=self.video.width,
                          height=self.video.height)

    def abort(self) -> None:
        if getattr(self, "_open", True):
            with contextlib.suppress(Exception):  # abandoning a half-written file
                self.out.close()
            self._open = False
        with contextlib.suppress(OSError):
            os.unlink(self.path)
