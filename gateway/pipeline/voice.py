"""Why: a voice is a likeness (issue #18), so every audio part and every video soundtrack is heard
before a decision: speech is found (voice activity), cut into windows, each window embedded and
matched against the enrolled voices, and the result frozen into `VoiceFact`s with their time range.
Image checks, video checks and the proxy share this one path.

Windows: speech segments closer than `MERGE_GAP_S` are joined; each stretch is cut into windows of
about `WINDOW_S` seconds (a remainder shorter than `MIN_SPEECH_S` joins the window before it). A
stretch shorter than `MIN_SPEECH_S` in all is recorded as `unidentified` (too little speech to tell
who it is; not ruled on, like a face below the policy's `min_face_px`). Every model and registry
call runs through the check stage's guarded call (off the event loop, under the model timeout);
a failure is a `ModelFailure` fact, so the decision fails closed.

Long audio (an audio job, `gateway.pipeline.audio_job`) is embedded and matched in batches of
`batch_windows` windows, each batch under its own timeout (the model timeout plus 0.5 s per second
of the batch's audio), with `progress(fraction)` after each: no single call grows with the clip.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from classifiers.base import SpeechSegment, VoiceEmbedder
from gateway.decision import FaceMatch, ModelFailure, VoiceFact
from gateway.pipeline.errors import ModelCallFailed
from gateway.pipeline.ports import ConsentLookup
from gateway.policy.runtime import PolicyRuntime

__all__ = ["MERGE_GAP_S", "MIN_SPEECH_S", "WINDOW_S", "Track", "speech_windows", "voice_facts"]

T = TypeVar("T")
Call = Callable[..., Awaitable[Any]]  # CheckStage._call(check, model, fn, timeout=None)

WINDOW_S = 3.0
MIN_SPEECH_S = 1.0
MERGE_GAP_S = 0.5


@dataclass(frozen=True)
class Track:
    """Mono float32 samples at the voice model's rate, from media part `media_index`."""

    media_index: int
    samples: np.ndarray


def speech_windows(segments: Sequence[SpeechSegment], *, window_s: float = WINDOW_S,
                   min_s: float = MIN_SPEECH_S, merge_gap_s: float = MERGE_GAP_S) -> list[tuple[float, float, bool]]:
    """(start, end, identifiable) windows over the speech: stretches joined across short gaps, cut
    into windows of about `window_s`; a stretch shorter than `min_s` is one unidentifiable window."""
    stretches: list[list[float]] = []
    for seg in sorted(segments, key=lambda s: s.start):
        if stretches and seg.start - stretches[-1][1] <= merge_gap_s:
            stretches[-1][1] = max(stretches[-1][1], seg.end)
        else:
            stretches.append([seg.start, seg.end])
    windows: list[tuple[float, float, bool]] = []
    for start, end in stretches:
        length = end - start
        if length < min_s:
            windows.append((start, end, False))
            continue
        count = max(1, int(length // window_s))
        if length - count * window_s >= min_s:
            count += 1
        step = length / count
        windows += [(start + i * step, start + (i + 1) * step if i < count - 1 else end, True) for i in range(count)]
    return windows


Progress = Callable[[float], None]


def _no_progress(fraction: float) -> None:
    return None


async def voice_facts(call: Call, consent: ConsentLookup, rt: PolicyRuntime, tracks: Sequence[Track], *,
                      batch_windows: int | None = None,
                      progress: Progress = _no_progress) -> tuple[tuple[VoiceFact, ...], list[ModelFailure]]:
    """The voices heard in `tracks`, matched against the registry (threshold from the policy).
    `batch_windows`: embed and match at most this many windows per model call (None: all in one);
    `progress(fraction)` is called after voice activity and after each batch (it may raise to stop)."""
    if not tracks:
        return (), []
    voice = rt.voice
    if voice is None:
        return (), [ModelFailure("voices", "none", "the policy names no voice model (consent.voice_model is "
                                 "null) but the request carries audio: it cannot be checked")]
    model: VoiceEmbedder = voice
    try:
        return await _facts(call, consent, rt, model, tracks, batch_windows, progress), []
    except ModelCallFailed as failed:
        return (), [failed.failure]


def _scaled(call: Call, seconds: float) -> float | None:
    """The check stage's model timeout plus 0.5 s per second of audio (None: its default)."""
    base = getattr(getattr(call, "__self__", None), "model_timeout_s", None)
    return float(base) + 0.5 * seconds if base is not None else None


async def _facts(call: Call, consent: ConsentLookup, rt: PolicyRuntime, model: VoiceEmbedder,
                 tracks: Sequence[Track], batch_windows: int | None, progress: Progress) -> tuple[VoiceFact, ...]:
    rate = model.sample_rate
    spec = rt.policy.consent.voice_model
    seconds = sum(len(t.samples) for t in tracks) / rate
    # the policy's timeout, else the deployment's model timeout plus 0.5 s per second of audio
    timeout = spec.timeout_s if spec is not None and spec.timeout_s else None
    located: list[tuple[int, float, float, bool]] = []
    clips: list[np.ndarray] = []
    for track in tracks:
        segments: list[SpeechSegment] = await call("voices", model.info.name,
                                                   functools.partial(model.speech, track.samples),
                                                   timeout or _scaled(call, len(track.samples) / rate / 10))
        samples = track.samples
        for start, end, identifiable in speech_windows(segments):
            located.append((track.media_index, start, end, identifiable))
            if identifiable:
                clips.append(samples[int(start * rate): int(end * rate)])
    progress(0.1)
    matches: list[list[FaceMatch]] = []
    threshold = rt.policy.consent.voice_match_threshold
    size = max(1, batch_windows or len(clips) or 1)
    total = sum(len(c) for c in clips) or 1
    done = 0
    for first in range(0, len(clips), size):
        batch = clips[first: first + size]
        batch_s = sum(len(c) for c in batch) / rate
        limit = timeout or _scaled(call, seconds if batch_windows is None else batch_s)
        matrix = await call("voices", model.info.name, functools.partial(model.embed, batch), limit)
        found = await call("consent", "registry", functools.partial(
            consent.match_voices, model.info.name, np.asarray(matrix, np.float32), threshold))
        matches += [[FaceMatch(m.subject_id, float(m.similarity)) for m in hits] for hits in found]
        done += sum(len(c) for c in batch)
        progress(0.1 + 0.9 * done / total)
    matched = iter(matches)
    facts = []
    for media_index, start, end, identifiable in located:
        if not identifiable:
            facts.append(VoiceFact(media_index, start, end, (), unidentified=f"{end - start:.2f} s of speech is "
                                   f"too little to identify (under {MIN_SPEECH_S:g} s)"))
        else:
            facts.append(VoiceFact(media_index, start, end, tuple(next(matched))))
    progress(1.0)
    return tuple(facts)
