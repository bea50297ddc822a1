"""Why: a video is judged and released by the same rules as an image — the policy's NSFW checks,
faces matched against the consent registry with grants read at decision time, the hash list,
the prompt rules, the pure `decide()`, exactly one audit entry before anything leaves — but its
facts carry time, and its release is a transcode. This module is that path, shared by the
synchronous endpoints (small videos) and the job runner (everything else).

Order of a release (see docs/video.md for why the analysis and the mark share one pass):

    probe → one decode pass: frames sampled for the models ∥ every frame marked and encoded
          → facts (faces matched per batch; grants read once, after the pass) → decide()
          → allow: C2PA-sign the MP4 → record (outputs, manifest digest) → audit append → answer
          → otherwise: the marked file and its watermark reservation are deleted, nothing leaves

The watermark id is reserved for the decision id (drawn before the pass) and recorded with the
manifest digest after signing. While the pass runs, the facts seen so far are decided after
every batch; once they already deny (deny is final: more facts cannot undo it), the encode is
abandoned. A `redact` outcome denies a video (face blurring in video does not exist yet).
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from classifiers.rayserve.client import RemoteFace
from gateway.apikeys import Principal
from gateway.audio.intake import AudioLimits, decode_soundtrack
from gateway.decision import Facts, ModelFailure, Verdict, VoiceFact, decide
from gateway.errors import GatewayError, TooLarge
from gateway.media import sniff
from gateway.pipeline.check import CheckStage
from gateway.pipeline.errors import ModelCallFailed, release_stage
from gateway.pipeline.inherit import InputBinding, resolve_binding
from gateway.pipeline.ports import Clock, PipelineConfig, PipelinePorts
from gateway.pipeline.record import DecisionRecord, OutputRef, VideoOutput
from gateway.pipeline.release import stage_failed
from gateway.pipeline.request import CheckRequest
from gateway.pipeline.steps import append, new_id, runtime_for
from gateway.pipeline.video_facts import (
    ConsentSoFar,
    PromptFacts,
    match_batch,
    video_facts,
    video_record,
    wanted_models,
)
from gateway.pipeline.voice import Track, voice_facts
from gateway.policy.runtime import PolicyRuntime
from gateway.policy.schema import VideoSettings
from gateway.provenance.c2pa_sign import ReleaseClaim
from gateway.provenance.errors import ProvenanceError
from gateway.provenance.payload import DWT_PAYLOAD
from gateway.requestlog import note_decision
from gateway.requestlog import stage as timed
from gateway.video.analysis import FrameAnalyzer, VideoFacts
from gateway.video.engine import MarkSpec, PassCancelled, PassResult, SamplerSpec, run_pass
from gateway.video.errors import VideoError
from gateway.video.intake import VideoInfo, VideoLimits, probe_video
from gateway.video.sampling import SampledFrame, new_seed, phase_from_seed
from gateway.video.sparsemark import METHOD as SPARSE_METHOD
from gateway.video.sparsemark import SparseMark
from gateway.video.sparsemark import version_for as sparse_version_for
from gateway.video.watermark import strength_for

__all__ = ["WATERMARK_METHOD", "VideoFlow", "VideoHooks", "VideoOutcome", "VideoRun", "is_video",
           "limits_of", "probe", "sampling_fps"]

WATERMARK_METHOD = SPARSE_METHOD  # "video-sparse" (gateway/video/sparsemark.py); "video-luma" before
MP4 = "video/mp4"


def sampling_fps(settings: VideoSettings, stage: str) -> float:
    """The rate the models see frames at: the policy's `sample_fps`, but on the output stage
    (every release) never below `release_min_sample_fps`."""
    if stage == "output":
        return max(settings.sample_fps, settings.release_min_sample_fps)
    return settings.sample_fps


def limits_of(settings: VideoSettings) -> VideoLimits:
    return VideoLimits(max_bytes=settings.max_bytes, max_seconds=settings.max_seconds,
                       max_width=settings.max_width, max_height=settings.max_height,
                       max_frames=settings.max_frames)


def probe(path: Path, settings: VideoSettings) -> VideoInfo:
    """Intake under the policy's video limits; VideoError (413 / 415 / 400) when refused."""
    return probe_video(path, limits_of(settings))


def is_video(data: bytes) -> bool:
    """Whether an upload is a video (any container we know of, accepted or not)."""
    kind = sniff(data[:4096])
    return kind is not None and kind.startswith("video/")


@dataclass(frozen=True)
class VideoRun:
    """One video decision. `decision_id` is drawn by the caller, so a job can note it before
    the audit append (and find out after a crash whether the append happened)."""

    principal: Principal
    request: CheckRequest
    action: Literal["check", "release"]
    src: Path
    work_dir: Path
    decision_id: str
    request_id: str
    # the input decision an output is bound to (issue #15.2); True: resolve it from the request at run time
    binding: InputBinding | None | bool = True


async def bound_for(run: VideoRun, stage: str, ports: PipelinePorts, config: PipelineConfig,
                    clock: Clock) -> InputBinding | None:
    """The input decision a run's output is bound to (issue #15.2): the one the caller resolved, or on
    the job path resolved (or refused) now, when the job runs."""
    if isinstance(run.binding, InputBinding):
        return run.binding
    if run.binding is True:
        return await resolve_binding(ports.decisions, clock, run.principal.tenant,
                                     run.request.model_copy(update={"stage": stage}), config.input_decision_max_age_s)
    return None


def _no_progress(stage: str, fraction: float) -> None:
    return None


def _never() -> bool:
    return False


@dataclass
class VideoHooks:
    """`progress(stage, fraction)`; `should_stop()` cancels the pass (PassCancelled);
    `before_append(record, output)` runs after signing and before the audit append."""

    progress: Callable[[str, float], None] = _no_progress
    should_stop: Callable[[], bool] = _never
    before_append: Callable[[DecisionRecord, Path | None], None] | None = None


@dataclass
class VideoOutcome:
    record: DecisionRecord
    output: Path | None
    info: VideoInfo


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class VideoFlow:
    """The video path of the pipeline (see the module docstring for its order)."""

    def __init__(self, ports: PipelinePorts, config: PipelineConfig, checker: CheckStage) -> None:
        self.ports = ports
        self.config = config
        self.checker = checker

    def _facts(self, rt: PolicyRuntime, run: VideoRun, stage: str, vf: VideoFacts, acc: ConsentSoFar,
               prompt: PromptFacts, failures: list[ModelFailure], voices: tuple[VoiceFact, ...] = (),
               bound: InputBinding | None = None) -> Facts:
        return video_facts(self.ports.consent, self.checker.clock, rt, run.request, run.principal.tenant, stage,
                           vf, acc, prompt, failures, voices, bound.inherited if bound is not None else ())

    async def _soundtrack(self, rt: PolicyRuntime, src: Path,
                          max_seconds: float) -> tuple[tuple[VoiceFact, ...], list[ModelFailure]]:
        """The voices in the video's soundtrack (issue #18), through the audio intake's decoder."""
        limits = AudioLimits(max_bytes=2**62, max_seconds=max_seconds + 1.0)  # the video's limits hold
        track = await asyncio.to_thread(decode_soundtrack, src, limits)
        if track is None:
            return (), []
        return await voice_facts(self.checker._call, self.ports.consent, rt, [Track(0, track.samples)])

    async def _prompt(self, rt: PolicyRuntime, prompt: str | None) -> tuple[PromptFacts, list[ModelFailure]]:
        if not prompt:
            return ((), {}), []
        try:
            return await self.checker.prompt_facts(rt, prompt), []
        except ModelCallFailed as failed:
            return ((), {}), [failed.failure]

    # -- the run -----------------------------------------------------------------------------
    async def run(self, run: VideoRun, hooks: VideoHooks | None = None) -> VideoOutcome:
        hooks = hooks or VideoHooks()
        rt, digest = runtime_for(self.ports.policies, run.principal.tenant)
        vs = rt.policy.video
        stage = "output" if run.action == "release" else run.request.stage
        bound = await bound_for(run, stage, self.ports, self.config, self.checker.clock)
        hooks.progress("probe", 0.0)
        info = await asyncio.to_thread(probe, run.src, vs)
        sha256 = await asyncio.to_thread(_file_sha256, run.src)
        prompt, failures = await self._prompt(rt, run.request.prompt)
        releasing = run.action == "release"
        watermarking = releasing and rt.policy.obligations.watermark is not None
        overlap = releasing and vs.overlap
        wm_id = await asyncio.to_thread(self._reserve, run.decision_id) if overlap and watermarking else None
        output = run.work_dir / f"{run.decision_id}.mp4"
        soundtrack = asyncio.ensure_future(self._soundtrack(rt, run.src, limits_of(vs).max_seconds))
        try:
            speculative = self._mark_spec(vs, output, wm_id, info) if overlap else None
            with timed(self.ports.metrics.stage_seconds, "video_analysis"):
                passed, vf, acc = await self._analyse(rt, run, stage, info, prompt, failures, hooks,
                                                      mark=speculative, weight=0.9 if releasing else 0.97)
            hooks.progress("decide", 0.9 if releasing else 0.97)
            voices, voice_failures = await soundtrack
            facts = await asyncio.to_thread(self._facts, rt, run, stage, vf, acc, prompt,
                                            [*failures, *voice_failures], voices, bound)
            verdict = await asyncio.to_thread(decide, rt.policy, facts)  # prompt rules: off the event loop
            record = video_record(decision_id=run.decision_id, request_id=run.request_id, rt=rt, digest=digest,
                                  facts=facts, verdict=verdict, vf=vf, info=info, sha256=sha256)
            record.input_decision_id = bound.decision_id if bound is not None else None
            note_decision(decision_id=run.decision_id, tenant=run.principal.tenant, verdict=verdict.decision,
                          use=run.request.use, stage=stage,
                          prompt=run.request.prompt if rt.policy.logging.prompt_text else None)
            done: Path | None = None
            if releasing and record.allowed:
                done = await self._release(run, rt, record, verdict, output, wm_id, passed, hooks, info)
            if done is None:
                await asyncio.to_thread(self._discard, output, run.decision_id)
            if hooks.before_append is not None:
                hooks.before_append(record, done)
            hooks.progress("record", 0.99)
            record = await append(self.ports, record)
        except BaseException:
            soundtrack.cancel()
            await asyncio.to_thread(self._discard, output, run.decision_id)
            raise
        self.ports.metrics.count_decision(stage, run.request.use, record.decision, rt.policy.uses)
        hooks.progress("done", 1.0)
        return VideoOutcome(record, done, info)

    async def _analyse(self, rt: PolicyRuntime, run: VideoRun, stage: str, info: VideoInfo,
                       prompt: PromptFacts, failures: list[ModelFailure],
                       hooks: VideoHooks, *, mark: MarkSpec | None,
                       weight: float) -> tuple[PassResult, VideoFacts, ConsentSoFar]:
        vs = rt.policy.video
        acc = ConsentSoFar()
        stop_marking = threading.Event()

        def after_batch(vf: VideoFacts, first: int) -> None:
            match_batch(self.ports.consent, rt, vf, first, acc)
            if mark is not None and not stop_marking.is_set():
                interim = decide(rt.policy, self._facts(rt, run, stage, vf, acc, prompt, failures))
                if interim.decision == "deny":
                    stop_marking.set()  # deny is final: stop spending the encoder on it

        # With the ray backend, a batch's face calls go out together and spread over the face
        # replicas (the NSFW models already get whole batches); tracking still sees frames in order.
        prefetch = rt.face.prefetching() if isinstance(rt.face, RemoteFace) else None
        fps = sampling_fps(vs, stage)
        seed = self.config.video_sampling_seed or new_seed()  # a grid the uploader cannot predict; recorded
        analyzer = FrameAnalyzer(wanted_models(rt, run.request.use, stage), prefetch or rt.face, hasher=rt.hasher,
                                 fps=fps, source_width=info.width, after_batch=after_batch)
        analyzer.facts.seed, analyzer.facts.phase = seed, phase_from_seed(seed, 1.0 / fps)
        analyzer.facts.change_threshold = vs.change_threshold

        def on_batch(batch: Sequence[SampledFrame]) -> None:
            if prefetch is not None and analyzer.face_analyzer is not None:
                prefetch.prime([s.rgb for s in batch])
            analyzer(batch)

        spec = SamplerSpec(on_batch=on_batch, fps=fps, scene_cut_threshold=vs.scene_cut_threshold,
                           max_side=self.config.working_max_side, eager=mark is not None,
                           phase=analyzer.facts.phase, change_threshold=vs.change_threshold)
        label = "analyse+mark" if mark is not None else "analyse"
        passed = await asyncio.to_thread(
            run_pass, run.src, sampler=spec, mark=mark, should_stop=hooks.should_stop,
            stop_marking=stop_marking, progress=lambda f: hooks.progress(label, weight * f))
        return passed, analyzer.facts, acc

    def _mark_spec(self, vs: VideoSettings, output: Path, wm_id: int | None, info: VideoInfo) -> MarkSpec:
        strength = strength_for(vs.watermark_strength, info.width, info.height)
        wm = SparseMark(wm_id, strength=strength) if wm_id is not None else None
        return MarkSpec(output, wm, crf=vs.crf, preset=vs.preset)

    async def _release(self, run: VideoRun, rt: PolicyRuntime, record: DecisionRecord, verdict: Verdict,
                       output: Path, wm_id: int | None, passed: PassResult, hooks: VideoHooks,
                       info: VideoInfo) -> Path | None:
        """Mark (when the pass did not), sign, fill `outputs`. Any failure turns the record into a
        deny (recorded, nothing released), as for images."""
        vs = rt.policy.video
        watermarking = "watermark" in verdict.obligations
        stage = "watermark"  # where a failure happened: the marking pass, then signing and storing the file
        try:
            out_info = passed.output
            if out_info is None:  # sequential mode, or the encode was stopped by an interim deny
                if watermarking and wm_id is None:
                    wm_id = await asyncio.to_thread(self._reserve, run.decision_id)
                mark = self._mark_spec(vs, output, wm_id if watermarking else None, info)
                with timed(self.ports.metrics.stage_seconds, "video_encode"):  # decode, mark, encode
                    out_info = (await asyncio.to_thread(
                        run_pass, run.src, mark=mark, should_stop=hooks.should_stop,
                        progress=lambda f: hooks.progress("mark", 0.45 + 0.45 * f))).output
            assert out_info is not None
            stage = "sign"
            hooks.progress("sign", 0.92)
            data = await asyncio.to_thread(output.read_bytes)
            mark_id = (WATERMARK_METHOD, wm_id) if watermarking and wm_id is not None else None
            claim = ReleaseClaim(
                decision_id=run.decision_id, policy_digest=record.policy.digest, grant_ids=tuple(record.grant_ids),
                watermark_id=wm_id if watermarking else None,
                watermark_method=WATERMARK_METHOD if watermarking else None,
                watermark_version=sparse_version_for(out_info.height),
                title=f"consentgate release {run.decision_id}")
            sign = bool(verdict.obligations.get("sign"))
            with timed(self.ports.metrics.stage_seconds, "sign"):
                signed = await asyncio.to_thread(self.ports.releaser.finish_video, data, MP4, claim=claim,
                                                 sign=sign, watermark=mark_id)
            if sign:
                data = signed.data
                await asyncio.to_thread(output.write_bytes, data)
        except (GatewayError, VideoError, PassCancelled):
            raise
        except ProvenanceError as exc:  # the releaser's error names its stage
            record.deny(stage_failed(release_stage(exc), exc))
            return None
        except Exception as exc:  # noqa: BLE001 - any other failure of this stage withholds the render
            record.deny(stage_failed(stage, exc))
            return None
        record.outputs.append(OutputRef(0, hashlib.sha256(data).hexdigest(), MP4, signed.manifest_digest or None,
                                        f"{WATERMARK_METHOD}:{wm_id}" if mark_id is not None else None))
        strength = strength_for(vs.watermark_strength, info.width, info.height)
        record.video[0].output = VideoOutput(
            frame_count=out_info.frame_count, duration_s=round(out_info.duration_s, 6), fps=round(out_info.fps, 6),
            width=out_info.width, height=out_info.height, audio=out_info.audio, codec="h264", crf=vs.crf,
            preset=vs.preset,
            watermark={"method": WATERMARK_METHOD, "strength": round(strength, 3)} if watermarking else None)
        return output

    # -- watermark bookkeeping ---------------------------------------------------------------
    def _reserve(self, decision_id: str) -> int:
        return self.ports.releaser.reserve_watermark_id(WATERMARK_METHOD, decision_id,
                                                        draw=lambda _method: DWT_PAYLOAD.new_id())

    def _discard(self, output: Path, decision_id: str) -> None:
        """Delete a marked file that will not be released, and its watermark reservation."""
        if output.exists():
            output.unlink()
        self.ports.releaser.discard_watermarks(WATERMARK_METHOD, decision_id)

    # -- the synchronous path (small videos on /v1/check and /v1/release) ---------------------------
    async def _admit(self, vs: VideoSettings, data: bytes, src: Path, where: str, hint: str = "") -> VideoInfo:
        """The synchronous intake of a video: `video.sync_max_bytes`, then written to `src` and probed under
        the policy's video limits and codec allowlist (`probe`), then `video.sync_max_seconds`. 413 / 415 /
        400 when refused."""
        if len(data) > vs.sync_max_bytes:
            raise TooLarge(f"the video is {len(data)} bytes; {where} takes videos up to {vs.sync_max_bytes} "
                           f"bytes{hint}", code="video_too_large")
        await asyncio.to_thread(src.write_bytes, data)
        info = await asyncio.to_thread(probe, src, vs)
        if info.duration_s > vs.sync_max_seconds:
            raise TooLarge(f"the video lasts {info.duration_s:.1f} s; {where} takes videos up to "
                           f"{vs.sync_max_seconds:g} s{hint}", code="video_too_large")
        return info

    async def admit_upload(self, principal: Principal, data: bytes, where: str) -> VideoInfo:
        """A video under exactly the intake `/v1/check` applies (sizes, duration, codecs), without deciding:
        what `/v1/provenance/verify` takes (issue #15.9)."""
        runtime, _ = runtime_for(self.ports.policies, principal.tenant)
        scratch = self.config.scratch_dir
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            return await self._admit(runtime.policy.video, data, Path(tmp) / "input", where)

    async def run_upload(self, principal: Principal, request: CheckRequest, data: bytes,
                         action: Literal["check", "release"], *,
                         binding: InputBinding | None | bool = True) -> tuple[DecisionRecord, bytes | None]:
        """Decide (and release) a small uploaded video within the request. Videos over the policy's
        `video.sync_max_bytes` / `video.sync_max_seconds` get 413 pointing to /v1/jobs. Returns the
        appended record and, on an allowed release, the signed MP4."""
        runtime, _ = runtime_for(self.ports.policies, principal.tenant)
        vs = runtime.policy.video
        to_jobs = "; send it to POST /v1/jobs instead (same multipart, answered 202 with a job id)"
        scratch = self.config.scratch_dir
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            src = Path(tmp) / "input"
            await self._admit(vs, data, src, f"/v1/{action}", to_jobs)
            run = VideoRun(principal, request, action, src, Path(tmp), new_id(), request.request_id or new_id(),
                           binding)
            outcome = await self.run(run)
            output = await asyncio.to_thread(outcome.output.read_bytes) if outcome.output is not None else None
        return outcome.record, output
