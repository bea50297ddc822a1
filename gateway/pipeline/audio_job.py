"""Why: audio can be long — a podcast, an audiobook chapter, a dubbed track — and the request path
(`/v1/check`, `/v1/release`) runs every check under one deadline (`check_deadline_s`, 30 s). An
audio job (`POST /v1/jobs` with one audio part, issue #18) runs the same voice check over the whole
clip outside any request: decoded once, voice activity over the clip, its speech windows embedded
and matched in batches (`voice_facts(batch_windows=...)`, each call under its own timeout), with
progress after each batch; then the same decision as a synchronous audio check (voices, the prompt,
grants read at decision time, `decide()`), and on release the synchronous path's obligations
(`release_audio`: mark, re-encode in the type it came in, sign) — so a job's result is the file
`/v1/release` would have answered.

    decode ─► voices (VAD, windows in batches, progress) ─► decide ─► [release: mark → encode → sign]
          ─► before_append (the job stores the file, notes the decision id) ─► append

Fail closed as everywhere: a model or registry failure is a `ModelFailure` fact (deny), a failed
mark or signature turns the record into a deny naming the stage, and nothing leaves unless the
appended record allows.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from pathlib import Path

from gateway.audio.intake import AudioLimits, decode_audio
from gateway.decision import Facts, GrantFact, InheritedFact, ModelFailure, NameFact, SubjectFact, VoiceFact, decide
from gateway.pipeline.audio_release import AUDIO_MARK, release_audio
from gateway.pipeline.check import CheckStage
from gateway.pipeline.errors import ModelCallFailed
from gateway.pipeline.ports import PipelineConfig, PipelinePorts
from gateway.pipeline.record import DecisionRecord, MediaRef, build_record
from gateway.pipeline.steps import append, runtime_for
from gateway.pipeline.video import VideoHooks, VideoRun, bound_for
from gateway.pipeline.voice import Track, voice_facts
from gateway.policy.runtime import PolicyRuntime
from gateway.policy.schema import VideoSettings
from gateway.requestlog import note_decision
from gateway.video.errors import PassCancelled

__all__ = ["AUDIO_SUFFIX", "BATCH_WINDOWS", "AudioFlow", "AudioOutcome", "job_audio_limits"]

# windows of about 3 s: 20 per model call is about a minute of speech per batch (and per progress step)
BATCH_WINDOWS = 20
# the file name suffix of a released audio file, by its type
AUDIO_SUFFIX = {"audio/wav": "wav", "audio/flac": "flac", "audio/mpeg": "mp3", "audio/mp4": "m4a"}


def job_audio_limits(vs: VideoSettings) -> AudioLimits:
    """An audio job takes what a video job takes: the policy's `video.max_bytes` and `video.max_seconds`."""
    return AudioLimits(max_bytes=vs.max_bytes, max_seconds=vs.max_seconds)


@dataclass
class AudioOutcome:
    record: DecisionRecord
    output: Path | None
    mime: str | None  # the released file's type (None when nothing is released)


class AudioFlow:
    """The audio-job path of the pipeline (see the module docstring for its order). `run` takes the
    video path's `VideoRun` and `VideoHooks` (a job is a job, whatever its media)."""

    def __init__(self, ports: PipelinePorts, config: PipelineConfig, checker: CheckStage) -> None:
        self.ports = ports
        self.config = config
        self.checker = checker

    async def run(self, run: VideoRun, hooks: VideoHooks | None = None) -> AudioOutcome:
        hooks = hooks or VideoHooks()
        rt, digest = runtime_for(self.ports.policies, run.principal.tenant)
        releasing = run.action == "release"
        stage = "output" if releasing else run.request.stage
        bound = await bound_for(run, stage, self.ports, self.config, self.checker.clock)  # issue #15.2
        hooks.progress("decode", 0.0)
        data = await asyncio.to_thread(run.src.read_bytes)
        audio = await asyncio.to_thread(decode_audio, data, job_audio_limits(rt.policy.video))
        self._stop_if_asked(hooks)
        hooks.progress("voices", 0.05)
        prompt, failures = await self._prompt(rt, run.request.prompt, run.request.use, stage)
        span = 0.8 if releasing else 0.93

        def heard(fraction: float) -> None:
            self._stop_if_asked(hooks)
            hooks.progress("voices", 0.05 + (span - 0.05) * fraction)

        voices, voice_failures = await voice_facts(self.checker._call, self.ports.consent, rt,
                                                   [Track(0, audio.samples)], batch_windows=BATCH_WINDOWS,
                                                   progress=heard)
        hooks.progress("decide", span)
        facts = await self._facts(rt, run, stage, prompt, [*failures, *voice_failures], voices,
                                  bound.inherited if bound is not None else ())
        verdict = await asyncio.to_thread(decide, rt.policy, facts)  # prompt rules: off the event loop
        record = build_record(decision_id=run.decision_id, request_id=run.request_id, facts=facts, verdict=verdict,
                              policy=rt.policy, policy_digest=digest,
                              media=[MediaRef(audio.sha256, audio.mime, 0, 0, round(audio.duration_s, 3))])
        record.input_decision_id = bound.decision_id if bound is not None else None
        note_decision(decision_id=run.decision_id, tenant=run.principal.tenant, verdict=verdict.decision,
                      use=run.request.use, stage=stage,
                      prompt=run.request.prompt if rt.policy.logging.prompt_text else None)
        output: Path | None = None
        mime: str | None = None
        try:
            if releasing:
                hooks.progress("mark", 0.85)
                files = await release_audio(self.ports.releaser, record, verdict.obligations, audio, data)
                if files and record.allowed:
                    mime = files[0].mime
                    output = run.work_dir / f"{run.decision_id}.{AUDIO_SUFFIX.get(mime, 'bin')}"
                    await asyncio.to_thread(output.write_bytes, files[0].data)
            if hooks.before_append is not None:
                hooks.before_append(record, output)
            hooks.progress("record", 0.99)
            record = await append(self.ports, record)
        except BaseException:
            await asyncio.to_thread(self.ports.releaser.discard_watermarks, AUDIO_MARK, run.decision_id)
            raise
        self.ports.metrics.count_decision(stage, run.request.use, record.decision, rt.policy.uses)
        hooks.progress("done", 1.0)
        return AudioOutcome(record, output if record.allowed else None, mime if record.allowed else None)

    @staticmethod
    def _stop_if_asked(hooks: VideoHooks) -> None:
        if hooks.should_stop():
            raise PassCancelled("the job was stopped")

    async def _prompt(self, rt: PolicyRuntime, prompt: str | None, use: str,
                      stage: str) -> tuple[tuple[tuple[NameFact, ...], dict[str, float]], list[ModelFailure]]:
        """The prompt's facts, as the synchronous check gathers them (when the stage looks at prompts)."""
        up = rt.policy.uses.get(use)
        rules = getattr(up, stage, None) if up is not None and stage in ("input", "output") else None
        if not prompt or (rules is not None and not rules.prompt):
            return ((), {}), []
        try:
            return await self.checker.prompt_facts(rt, prompt), []
        except ModelCallFailed as failed:
            return ((), {}), [failed.failure]

    async def _facts(self, rt: PolicyRuntime, run: VideoRun, stage: str,
                     prompt: tuple[tuple[NameFact, ...], dict[str, float]], failures: list[ModelFailure],
                     voices: tuple[VoiceFact, ...], inherited: tuple[InheritedFact, ...] = ()) -> Facts:
        """The facts `decide()` takes (grants and subjects read now, as the synchronous check does)."""
        names, concepts = prompt
        ids = sorted({n.subject_id for n in names} | {m.subject_id for v in voices for m in v.matches}
                     | {i.subject_id for i in inherited})
        grants: dict[str, tuple[GrantFact, ...]] = {}
        subjects: dict[str, SubjectFact] = {}
        all_failures = list(failures)
        if ids:
            consent = self.ports.consent

            def read() -> tuple[dict[str, tuple[GrantFact, ...]], dict[str, SubjectFact]]:
                return consent.grants_for(ids), consent.subject_facts(ids)

            try:
                grants, subjects = await self.checker._call("consent", "registry", functools.partial(read))
            except ModelCallFailed as failed:
                all_failures.append(failed.failure)
        return Facts(stage=stage, use=run.request.use, tenant=run.principal.tenant, end_user=run.request.end_user,
                     now=self.checker.clock(), media_count=1, prompt=run.request.prompt, names=tuple(names),
                     concepts=dict(concepts), subjects=dict(subjects), grants=grants,
                     failures=tuple(all_failures), voices=voices, media_kind="audio", inherited=inherited)
