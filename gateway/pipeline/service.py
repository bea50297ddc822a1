"""Why: check, release, generate and jobs all make decisions the same way — decode safely, run the
policy's checks, decide, carry out the obligations (redact, mark, sign), append the record to the
audit log *before* anything is answered or released. `Pipeline` is the one place that orders that,
for images and videos alike; the HTTP routers only parse, call it and map the answer, the proxy
(`gateway.pipeline.proxy`) wraps it around an upstream call, the job runner drives its video and
audio paths (`video`, `audio`).

    decode ─► check (models, registry) ─► decide ─► [release: redact → mark → sign] ─► append ─► answer

Its inputs are ports (`gateway.pipeline.ports.PipelinePorts`), built by `gateway.context`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.apikeys import Principal, require_use
from gateway.audio.intake import DecodedAudio
from gateway.errors import Invalid, NotReady
from gateway.media import DecodedImage
from gateway.pipeline.audio_job import AudioFlow
from gateway.pipeline.audio_release import release_audio
from gateway.pipeline.check import CheckInput, CheckResult, CheckStage
from gateway.pipeline.inherit import InputBinding, resolve_binding
from gateway.pipeline.parallel import InFlight
from gateway.pipeline.ports import Clock, PipelineConfig, PipelinePorts
from gateway.pipeline.record import DecisionRecord, MediaRef, build_record
from gateway.pipeline.release import ReleasedFile, release_images
from gateway.pipeline.request import CheckRequest
from gateway.pipeline.steps import append, decode_audio_parts, decode_images, is_audio, new_id, runtime_for
from gateway.pipeline.threads import in_thread
from gateway.pipeline.video import VideoFlow, is_video
from gateway.pipeline.voice import Track
from gateway.policy.runtime import PolicyRuntime
from gateway.requestlog import note_decision, stage

__all__ = ["Admitted", "Decision", "Pipeline", "Release"]

T = TypeVar("T")


@dataclass
class Decision:
    """A decision made and not yet appended (the proxy appends its input decision itself)."""

    record: DecisionRecord
    result: CheckResult
    runtime: PolicyRuntime
    images: list[DecodedImage]


@dataclass(frozen=True)
class Admitted:
    """A file that passed the check's intake: its type, and the decoded image when it is one."""

    mime: str
    image: DecodedImage | None = None


@dataclass
class Release:
    """An appended release decision and the files that may leave (none unless it allows)."""

    record: DecisionRecord
    files: list[ReleasedFile]


class Pipeline:
    def __init__(self, ports: PipelinePorts, config: PipelineConfig) -> None:
        self.ports = ports
        self.config = config
        self.checker = CheckStage(ports.consent, ports.metrics, clock=ports.clock,
                                  model_timeout_s=config.model_timeout_s,
                                  check_deadline_s=config.check_deadline_s,
                                  in_flight=InFlight(config.split_below))
        self.video = VideoFlow(ports, config, self.checker)
        self.audio = AudioFlow(ports, config, self.checker)  # audio jobs (issue #18)

    # Tests and replays swap the clock and the model timeout on a live pipeline.
    @property
    def clock(self) -> Clock:
        return self.checker.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self.checker.clock = clock

    @property
    def model_timeout_s(self) -> float:
        return self.checker.model_timeout_s

    @model_timeout_s.setter
    def model_timeout_s(self, seconds: float) -> None:
        self.checker.model_timeout_s = seconds

    # -- the steps ---------------------------------------------------------------------------
    def runtime_for(self, tenant: str) -> tuple[PolicyRuntime, str]:
        return runtime_for(self.ports.policies, tenant)

    async def decode(self, parts: list[bytes]) -> list[DecodedImage]:
        with stage(self.ports.metrics.stage_seconds, "decode"):
            return await decode_images(parts, self.config)

    async def bind(self, principal: Principal, request: CheckRequest) -> InputBinding | None:
        """The input decision this request is bound to (issue #15.2, `gateway.pipeline.inherit`): None
        when it names none and needs none; 4xx when it needs one and names none, or names a bad one."""
        return await resolve_binding(self.ports.decisions, self.clock, principal.tenant, request,
                                     self.config.input_decision_max_age_s)

    async def decide(self, principal: Principal, request: CheckRequest, images: list[DecodedImage], *,
                     request_id: str | None = None, audio: list[DecodedAudio] | None = None,
                     binding: InputBinding | None | bool = True) -> Decision:
        """`binding`: the input binding already resolved (or None: none), or True to resolve it here."""
        require_use(principal, request.use)  # the key's uses bind the use (403 use_not_allowed)
        bound = await self.bind(principal, request) if binding is True else _given(binding)
        runtime, digest = self.runtime_for(principal.tenant)
        audio = audio or []
        tracks = [Track(i, a.samples) for i, a in enumerate(audio)]
        result = await self.checker.run(
            runtime,
            CheckInput(request.stage, request.use, principal.tenant, request.end_user, request.prompt, images,
                       tracks, inherited=bound.inherited if bound is not None else ()),
        )
        media = [MediaRef(img.sha256, img.mime, img.width, img.height) for img in images]
        media += [MediaRef(a.sha256, a.mime, 0, 0, round(a.duration_s, 3)) for a in audio]
        record = build_record(
            decision_id=new_id(), request_id=request_id or request.request_id or new_id(), facts=result.facts,
            verdict=result.verdict, policy=runtime.policy, policy_digest=digest, media=media,
        )
        record.input_decision_id = bound.decision_id if bound is not None else None
        self.ports.metrics.count_decision(request.stage, request.use, result.verdict.decision, runtime.policy.uses)
        note_decision(decision_id=record.decision_id, tenant=principal.tenant, verdict=result.verdict.decision,
                      use=request.use, stage=request.stage,
                      prompt=request.prompt if runtime.policy.logging.prompt_text else None)
        return Decision(record, result, runtime, images)

    async def append(self, record: DecisionRecord) -> DecisionRecord:
        return await append(self.ports, record)

    async def admit(self, principal: Principal, data: bytes, where: str) -> Admitted:
        """One file under exactly the intake `/v1/check` applies to a `media` part — the image limits
        (bytes, pixels, the decompression-bomb guard, JPEG/PNG/WebP only), the audio decoder's limits,
        the policy's synchronous video limits and codec allowlist — without deciding anything. 413 / 415 /
        400 when refused. `/v1/provenance/verify` takes files through it (issue #15.9)."""
        if is_audio(data):
            with stage(self.ports.metrics.stage_seconds, "decode"):
                audio = await decode_audio_parts([data], self.config)
            return Admitted(audio[0].mime)
        if is_video(data):
            info = await self.video.admit_upload(principal, data, where)
            return Admitted(info.mime)
        image = (await self.decode([data]))[0]
        return Admitted(image.mime, image)

    async def within_budget(self, fn: Callable[[], T], what: str) -> T:
        """`fn()` in a worker thread under the check's time budget (`check_deadline_s`): over it, 503
        `deadline_exceeded` — never a request held open, never a 500. (The thread itself runs on.)"""
        limit = self.checker.check_deadline_s
        try:
            return await asyncio.wait_for(in_thread(fn), timeout=limit)
        except TimeoutError:
            raise NotReady(f"{what} took longer than its time budget of {limit:g} s; nothing was answered",
                           code="deadline_exceeded", headers={"Retry-After": "5"}) from None

    # -- the entry points --------------------------------------------------------------------
    async def check(self, principal: Principal, request: CheckRequest, parts: list[bytes]) -> DecisionRecord:
        """Decide on images (or one small video) and record it; nothing is marked or released."""
        require_use(principal, request.use)
        binding = await self.bind(principal, request)  # before decoding: a refusal costs nothing
        # voices are likenesses too (issue #18); audio first: M4A is ISO-BMFF like MP4 video
        if any(is_audio(part) for part in parts):
            with stage(self.ports.metrics.stage_seconds, "decode"):
                audio = await decode_audio_parts(parts, self.config)
            decision = await self.decide(principal, request, [], audio=audio, binding=binding)
            return await self.append(decision.record)
        if any(is_video(part) for part in parts):  # small videos are checked here; larger ones: jobs
            if len(parts) != 1:
                raise Invalid(f"a video is checked on its own: send exactly one `media` part (got {len(parts)})")
            record, _ = await self.video.run_upload(principal, request, parts[0], "check", binding=binding)
            return record
        decision = await self.decide(principal, request, await self.decode(parts), binding=binding)
        return await self.append(decision.record)

    async def release(self, principal: Principal, request: CheckRequest, parts: list[bytes], *,
                      request_id: str | None = None, software_agent: dict[str, Any] | None = None,
                      allow_video: bool = True, binding: InputBinding | None | bool = True) -> Release:
        """The output check of a render, then on allow its obligations, then the record: the files
        come back only when the appended record allows. `binding` as in `decide` (the proxy passes
        its own input decision)."""
        require_use(principal, request.use)
        request = request.model_copy(update={"stage": "output"})
        bound = await self.bind(principal, request) if binding is True else _given(binding)
        if any(is_audio(part) for part in parts):  # voices are likenesses too (issue #18)
            if len(parts) != 1:
                raise Invalid(f"audio is released one file at a time (got {len(parts)} media parts)")
            with stage(self.ports.metrics.stage_seconds, "decode"):
                audio = await decode_audio_parts(parts, self.config)
            decision = await self.decide(principal, request, [], request_id=request_id, audio=audio, binding=bound)
            files = await release_audio(self.ports.releaser, decision.record, decision.result.verdict.obligations,
                                        audio[0], parts[0])
            if software_agent:
                decision.record.software_agent = dict(software_agent)
            record = await self.append(decision.record)
            return Release(record, files if record.allowed else [])
        if allow_video and len(parts) == 1 and is_video(parts[0]):  # small videos: as MP4; larger: jobs
            record, video = await self.video.run_upload(principal, request, parts[0], "release", binding=bound)
            return Release(record, [ReleasedFile(video, "video/mp4")] if video is not None else [])
        images = await self.decode(parts)
        decision = await self.decide(principal, request, images, request_id=request_id, binding=bound)
        files = await release_images(self.ports.releaser, decision.record, decision.result.verdict.obligations,
                                     images, software_agent=software_agent,
                                     stage_seconds=self.ports.metrics.stage_seconds)
        if software_agent:
            decision.record.software_agent = dict(software_agent)
        record = await self.append(decision.record)
        return Release(record, files if record.allowed else [])


def _given(binding: InputBinding | None | bool) -> InputBinding | None:
    return binding if isinstance(binding, InputBinding) else None
