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
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlmodel import Session, select

from classifiers.base import NsfwClassifier
from gateway.apikeys import Principal
from gateway.decision import (
    FaceFact,
    FaceMatch,
    Facts,
    HashHit,
    ModelFailure,
    NsfwFact,
    Reason,
    Verdict,
    decide,
)
from gateway.errors import BadInput, GatewayError, TooLarge, UnsupportedMedia
from gateway.pipeline.check import _Failed
from gateway.pipeline.record import build_record
from gateway.pipeline.service import CheckRequestBody, DecisionService
from gateway.policy.runtime import PolicyRuntime
from gateway.policy.schema import Policy, VideoSettings
from gateway.provenance import ReleaseClaim, WatermarkRecord, record_watermark, reserve_watermark_id
from gateway.provenance.payload import DWT_PAYLOAD
from gateway.video.analysis import FrameAnalyzer, VideoFacts
from gateway.video.engine import MarkSpec, PassCancelled, PassResult, SamplerSpec, run_pass
from gateway.video.intake import VideoError, VideoInfo, VideoLimits, probe_video
from gateway.video.sampling import summarise
from gateway.video.watermark import VideoWatermarker, refresh_for, strength_for

__all__ = ["WATERMARK_METHOD", "VideoHooks", "VideoOutcome", "VideoPipeline", "VideoRun", "gateway_error",
           "is_video", "limits_of", "probe", "run_upload"]

WATERMARK_METHOD = "video-luma"
MP4 = "video/mp4"


def limits_of(settings: VideoSettings) -> VideoLimits:
    return VideoLimits(max_bytes=settings.max_bytes, max_seconds=settings.max_seconds,
                       max_width=settings.max_width, max_height=settings.max_height,
                       max_frames=settings.max_frames)


def gateway_error(exc: VideoError) -> GatewayError:
    """The API error for a refused video (413 / 415 / 400, with the library's stable code)."""
    kind = {413: TooLarge, 415: UnsupportedMedia}.get(exc.status, BadInput)
    return kind(exc.message, code=exc.code)


def probe(path: Path, settings: VideoSettings) -> VideoInfo:
    try:
        return probe_video(path, limits_of(settings))
    except VideoError as exc:
        raise gateway_error(exc) from None


@dataclass(frozen=True)
class VideoRun:
    """One video decision. `decision_id` is drawn by the caller, so a job can note it before
    the audit append (and find out after a crash whether the append happened)."""

    principal: Principal
    body: CheckRequestBody
    action: Literal["check", "release"]
    src: Path
    work_dir: Path
    decision_id: str
    request_id: str


@dataclass
class VideoHooks:
    """`progress(stage, fraction)`; `should_stop()` cancels the pass (PassCancelled);
    `before_append(record, output)` runs after signing and before the audit append."""

    progress: Callable[[str, float], None] = lambda stage, fraction: None
    should_stop: Callable[[], bool] = lambda: False
    before_append: Callable[[dict[str, Any], Path | None], None] | None = None


@dataclass
class VideoOutcome:
    record: dict[str, Any]
    output: Path | None
    info: VideoInfo


@dataclass
class _Consent:
    """Face and hash-list facts built batch by batch from the analysis (matching happens while
    the pass runs; grants are read once, at decision time)."""

    faces: list[FaceFact] = field(default_factory=list)
    hash_hits: dict[str, HashHit] = field(default_factory=dict)
    failures: list[ModelFailure] = field(default_factory=list)
    seen_faces: int = 0


def _wanted_models(rt: PolicyRuntime, use: str, stage: str) -> dict[str, NsfwClassifier]:
    up = rt.policy.uses.get(use)
    rules = getattr(up, stage, None) if up is not None else None
    if rules is None:
        return {}
    aliases = [c.model for c in rules.nsfw] + [m.model for e in rules.ensembles for m in e.members]
    return {alias: rt.nsfw[alias] for alias in dict.fromkeys(aliases)}


def _thresholds(policy: Policy, use: str, stage: str) -> dict[str, dict[str, float]]:
    """Per model alias and label, the lowest score any rule acts on (review or deny)."""
    up = policy.uses.get(use)
    rules = getattr(up, stage, None) if up is not None else None
    out: dict[str, dict[str, float]] = {}
    if rules is None:
        return out

    def note(alias: str, label: str, values: list[float | None]) -> None:
        found = [v for v in values if v is not None]
        if found:
            current = out.setdefault(alias, {}).get(label, 1.0)
            out[alias][label] = min([current, *found])

    for check in rules.nsfw:
        for label, thr in check.labels.items():
            note(check.model, label, [thr.deny, thr.review])
    for ens in rules.ensembles:
        for member in ens.members:
            note(member.model, member.label, [ens.threshold.deny, ens.threshold.review])
    return out


class VideoPipeline:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.service = DecisionService(gw)

    # -- facts -------------------------------------------------------------------------------
    def _match_batch(self, rt: PolicyRuntime, facts: VideoFacts, first: int, acc: _Consent) -> None:
        consent = self.gw.pipeline.consent
        face_model = rt.face.info.name
        new = facts.faces[acc.seen_faces:]
        acc.seen_faces = len(facts.faces)
        if new:
            embeddings = [f.face.embedding for f in new]
            if any(e is None for e in embeddings):
                acc.failures.append(ModelFailure("faces", face_model, "the analyzer returned no embedding"))
            else:
                try:
                    matrix = np.stack([np.asarray(e, np.float32) for e in embeddings])
                    matches = consent.match_faces(face_model, matrix, rt.policy.consent.match_threshold)
                except Exception as exc:  # noqa: BLE001 - the registry is down: fail closed
                    acc.failures.append(ModelFailure("consent", "registry", f"{type(exc).__name__}: {exc}"))
                    matches = [[] for _ in new]
                for found, hits in zip(new, matches, strict=True):
                    matched = tuple(FaceMatch(m.subject_id, float(m.similarity)) for m in hits)
                    acc.faces.append(FaceFact(0, found.face.bbox, float(found.face.det_score), matched,
                                              frame=found.frame, t=found.t))
        hashes = [h for per_frame in facts.hashes[first:] for h in per_frame]
        if hashes:
            try:
                for subject_id, distance in consent.hash_hits(hashes, rt.policy.hash_list.max_distance):
                    best = acc.hash_hits.get(subject_id)
                    if best is None or distance < best.distance:
                        acc.hash_hits[subject_id] = HashHit(0, subject_id, distance)
            except Exception as exc:  # noqa: BLE001
                acc.failures.append(ModelFailure("hash_list", "registry", f"{type(exc).__name__}: {exc}"))

    def _facts(self, rt: PolicyRuntime, run: VideoRun, stage: str, vf: VideoFacts, acc: _Consent,
               prompt: tuple[Any, dict[str, float]], failures: list[ModelFailure]) -> Facts:
        nsfw = []
        for alias, per_frame in vf.nsfw.items():
            model = rt.nsfw[alias]
            for ref, scores in zip(vf.frames, per_frame, strict=False):
                nsfw.append(NsfwFact(0, alias, model.info.name, model.info.version,
                                     {k: float(v) for k, v in scores.items()}, frame=ref.index, t=ref.t))
        names, concepts = prompt
        analysis_failures = [  # an NSFW check is named by its alias, as check.py does
            ModelFailure(f.check, f.check.removeprefix("nsfw.") if f.check.startswith("nsfw.") else f.model,
                         f.message) for f in vf.failures]
        all_failures = [*failures, *analysis_failures, *acc.failures]
        ids = sorted({m.subject_id for f in acc.faces for m in f.matches} | {n.subject_id for n in names})
        grants: dict[str, Any] = {}
        subjects: dict[str, Any] = {}
        if ids:
            consent = self.gw.pipeline.consent
            try:
                grants, subjects = consent.grants_for(ids), consent.subject_facts(ids)
            except Exception as exc:  # noqa: BLE001
                all_failures.append(ModelFailure("consent", "registry", f"{type(exc).__name__}: {exc}"))
        return Facts(stage=stage, use=run.body.use, tenant=run.principal.tenant, end_user=run.body.end_user,
                     now=self.gw.pipeline.clock(), media_count=1, prompt=run.body.prompt, nsfw=tuple(nsfw),
                     faces=tuple(acc.faces), names=tuple(names), concepts=dict(concepts),
                     hash_hits=tuple(acc.hash_hits.values()), subjects=dict(subjects), grants=grants,
                     failures=tuple(all_failures), media_kind="video")

    async def _prompt(self, rt: PolicyRuntime, prompt: str | None) -> tuple[tuple[Any, dict[str, float]],
                                                                            list[ModelFailure]]:
        if not prompt:
            return ((), {}), []
        try:
            return await self.gw.pipeline._prompt_facts(rt, prompt), []
        except _Failed as failed:
            return ((), {}), [failed.failure]

    # -- the run -----------------------------------------------------------------------------
    async def run(self, run: VideoRun, hooks: VideoHooks | None = None) -> VideoOutcome:
        hooks = hooks or VideoHooks()
        rt, digest = self.service.runtime_for(run.principal.tenant)
        vs = rt.policy.video
        stage = "output" if run.action == "release" else run.body.stage
        hooks.progress("probe", 0.0)
        info = await asyncio.to_thread(probe, run.src, vs)
        sha256 = await asyncio.to_thread(_file_sha256, run.src)
        prompt, failures = await self._prompt(rt, run.body.prompt)
        releasing = run.action == "release"
        watermarking = releasing and rt.policy.obligations.watermark is not None
        overlap = releasing and vs.overlap
        wm_id = await asyncio.to_thread(self._reserve, run.decision_id) if overlap and watermarking else None
        output = run.work_dir / f"{run.decision_id}.mp4"
        try:
            speculative = self._mark_spec(vs, output, wm_id, info) if overlap else None
            passed, vf, acc = await self._analyse(rt, run, stage, info, prompt, failures, hooks,
                                                  mark=speculative, weight=0.9 if releasing else 0.97)
            hooks.progress("decide", 0.9 if releasing else 0.97)
            facts = await asyncio.to_thread(self._facts, rt, run, stage, vf, acc, prompt, failures)
            verdict = decide(rt.policy, facts)
            record = self._record(run, rt, digest, facts, verdict, vf, info, sha256, passed)
            done: Path | None = None
            if releasing and record["decision"] == "allow":
                done = await self._release(run, rt, record, verdict, output, wm_id, passed, hooks, info)
            if done is None:
                await asyncio.to_thread(self._discard, output, run.decision_id)
            if hooks.before_append is not None:
                hooks.before_append(record, done)
            hooks.progress("record", 0.99)
            record = await self.service.append(record)
        except BaseException:
            await asyncio.to_thread(self._discard, output, run.decision_id)
            raise
        self.gw.metrics.decisions.labels(stage, run.body.use, record["decision"]).inc()
        hooks.progress("done", 1.0)
        return VideoOutcome(record, done, info)

    async def _analyse(self, rt: PolicyRuntime, run: VideoRun, stage: str, info: VideoInfo,
                       prompt: tuple[Any, dict[str, float]], failures: list[ModelFailure],
                       hooks: VideoHooks, *, mark: MarkSpec | None,
                       weight: float) -> tuple[PassResult, VideoFacts, _Consent]:
        vs = rt.policy.video
        acc = _Consent()
        stop_marking = threading.Event()

        def after_batch(vf: VideoFacts, first: int) -> None:
            self._match_batch(rt, vf, first, acc)
            if mark is not None and not stop_marking.is_set():
                interim = decide(rt.policy, self._facts(rt, run, stage, vf, acc, prompt, failures))
                if interim.decision == "deny":
                    stop_marking.set()  # deny is final: stop spending the encoder on it

        analyzer = FrameAnalyzer(_wanted_models(rt, run.body.use, stage), rt.face, hasher=rt.hasher,
                                 fps=vs.sample_fps, source_width=info.width, after_batch=after_batch)
        spec = SamplerSpec(on_batch=analyzer, fps=vs.sample_fps, scene_cut_threshold=vs.scene_cut_threshold,
                           max_side=self.gw.settings.working_max_side, eager=mark is not None)
        label = "analyse+mark" if mark is not None else "analyse"
        try:
            passed = await asyncio.to_thread(
                run_pass, run.src, sampler=spec, mark=mark, should_stop=hooks.should_stop,
                stop_marking=stop_marking, progress=lambda f: hooks.progress(label, weight * f))
        except VideoError as exc:
            raise gateway_error(exc) from None
        return passed, analyzer.facts, acc

    def _mark_spec(self, vs: VideoSettings, output: Path, wm_id: int | None, info: VideoInfo) -> MarkSpec:
        strength = strength_for(vs.watermark_strength, info.width, info.height)
        refresh = refresh_for(info.width, info.height)
        wm = VideoWatermarker(wm_id, strength=strength, refresh_every=refresh) if wm_id is not None else None
        return MarkSpec(output, wm, crf=vs.crf, preset=vs.preset)

    async def _release(self, run: VideoRun, rt: PolicyRuntime, record: dict[str, Any], verdict: Verdict,
                       output: Path, wm_id: int | None, passed: PassResult, hooks: VideoHooks,
                       info: VideoInfo) -> Path | None:
        """Mark (when the pass did not), sign, fill `outputs`. Any failure turns the record into a
        deny (recorded, nothing released), as for images."""
        vs = rt.policy.video
        faults = self.gw.provenance.faults
        stage = "watermark"
        try:
            watermarking = "watermark" in verdict.obligations
            if watermarking and faults.watermark_fails:
                raise RuntimeError("watermark failed (fault injected)")
            out_info = passed.output
            if out_info is None:  # sequential mode, or the encode was stopped by an interim deny
                if watermarking and wm_id is None:
                    wm_id = await asyncio.to_thread(self._reserve, run.decision_id)
                mark = self._mark_spec(vs, output, wm_id if watermarking else None, info)
                try:
                    out_info = (await asyncio.to_thread(
                        run_pass, run.src, mark=mark, should_stop=hooks.should_stop,
                        progress=lambda f: hooks.progress("mark", 0.45 + 0.45 * f))).output
                except VideoError as exc:
                    raise gateway_error(exc) from None
            assert out_info is not None
            stage = "sign"
            hooks.progress("sign", 0.92)
            data = await asyncio.to_thread(output.read_bytes)
            manifest_digest = None
            if verdict.obligations.get("sign"):
                if faults.sign_fails:
                    raise RuntimeError("C2PA signing failed (fault injected)")
                claim = ReleaseClaim(
                    decision_id=run.decision_id, policy_digest=record["policy"]["digest"],
                    grant_ids=tuple(record["grant_ids"]), watermark_id=wm_id if watermarking else None,
                    watermark_method=WATERMARK_METHOD if watermarking else None,
                    title=f"consentgate release {run.decision_id}")
                signed = await asyncio.to_thread(self.gw.provenance.signer.sign, data, MP4, claim)
                data, manifest_digest = signed.data, signed.manifest_digest
                await asyncio.to_thread(output.write_bytes, data)
            if watermarking and wm_id is not None:
                await asyncio.to_thread(self._record_watermark, wm_id, run.decision_id, manifest_digest)
        except (GatewayError, PassCancelled):
            raise
        except Exception as exc:  # noqa: BLE001 - any provenance failure withholds the render
            record["decision"] = "deny"
            record["obligations"] = []
            record["reasons"].append(Reason(f"release.{stage}.failed", "deny",
                                            f"{stage} failed ({type(exc).__name__}: {exc}); nothing released")
                                     .as_dict())
            return None
        entry: dict[str, Any] = {"media_index": 0, "sha256": hashlib.sha256(data).hexdigest(), "type": MP4}
        if manifest_digest:
            entry["manifest_digest"] = manifest_digest
        if watermarking and wm_id is not None:
            entry["watermark_id"] = f"{WATERMARK_METHOD}:{wm_id}"
        record["outputs"].append(entry)
        strength = strength_for(vs.watermark_strength, info.width, info.height)
        record["video"][0]["output"] = {
            "frame_count": out_info.frame_count, "duration_s": round(out_info.duration_s, 6),
            "fps": round(out_info.fps, 6), "width": out_info.width, "height": out_info.height,
            "audio": out_info.audio, "codec": "h264", "crf": vs.crf, "preset": vs.preset,
            "watermark": {"method": WATERMARK_METHOD,
                          "strength": round(strength, 3)} if watermarking else None,
        }
        return output

    # -- the record --------------------------------------------------------------------------
    def _record(self, run: VideoRun, rt: PolicyRuntime, digest: str, facts: Facts, verdict: Verdict,
                vf: VideoFacts, info: VideoInfo, sha256: str, passed: PassResult) -> dict[str, Any]:
        media = {"sha256": sha256, "type": info.mime, "width": info.width, "height": info.height,
                 "duration": round(info.duration_s, 6)}
        thresholds = _thresholds(rt.policy, facts.use, facts.stage)
        summary: dict[str, Any] = {}
        for alias in vf.nsfw:
            labels = thresholds.get(alias, {})
            full = vf.nsfw_summary(alias, labels)
            summary[alias] = {label: full[label] for label in sorted(labels)}
        record = build_record(
            decision_id=run.decision_id, request_id=run.request_id, facts=facts, verdict=verdict,
            policy=rt.policy, policy_digest=digest, media=[media],
            video=[{
                "media_index": 0, "fps": round(info.fps, 6), "frame_count": info.frame_count,
                "duration_s": round(info.duration_s, 6), "video_codec": info.video_codec,
                "audio_codec": info.audio_codec,
                "sampling": {"fps": rt.policy.video.sample_fps, "frames": len(vf.frames),
                             "scene_cuts": sum(1 for f in vf.frames if f.is_scene_cut)},
                "nsfw": summary,
                "faces": _face_summary(facts, verdict, vf),
            }],
        )
        record["findings"]["nsfw"] = _relevant_nsfw(record["findings"]["nsfw"], thresholds)
        return record

    # -- watermark bookkeeping ---------------------------------------------------------------
    def _reserve(self, decision_id: str) -> int:
        with Session(self.gw.engine) as session:
            row = reserve_watermark_id(session, method=WATERMARK_METHOD, decision_id=decision_id,
                                       draw=lambda _method: DWT_PAYLOAD.new_id())
            return int(row.wm_id)

    def _record_watermark(self, wm_id: int, decision_id: str, manifest_digest: str | None) -> None:
        with Session(self.gw.engine) as session:
            record_watermark(session, method=WATERMARK_METHOD, wm_id=wm_id, decision_id=decision_id,
                             manifest_digest=manifest_digest)

    def _discard(self, output: Path, decision_id: str) -> None:
        """Delete a marked file that will not be released, and its watermark reservation."""
        if output.exists():
            output.unlink()
        with Session(self.gw.engine) as session:
            for row in session.exec(select(WatermarkRecord).where(
                    WatermarkRecord.method == WATERMARK_METHOD, WatermarkRecord.decision_id == decision_id)):
                session.delete(row)
            session.commit()


def _relevant_nsfw(entries: list[dict[str, Any]],
                   thresholds: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Keep the per-frame NSFW findings a replay needs: frames where a thresholded label reaches
    the lowest threshold any rule acts on, and the frame with each label's maximum score. The
    per-label summary (max, time ranges) is in record["video"]."""
    best: dict[tuple[str, str], tuple[float, int]] = {}
    keep: set[int] = set()
    for i, entry in enumerate(entries):
        for label, limit in thresholds.get(entry["model"], {}).items():
            score = entry["scores"].get(label)
            if score is None:
                continue
            if score >= limit:
                keep.add(i)
            key = (entry["model"], label)
            if key not in best or score > best[key][0]:
                best[key] = (score, i)
    keep |= {i for _, i in best.values()}
    return [e for i, e in enumerate(entries) if i in keep]


def _face_summary(facts: Facts, verdict: Verdict, vf: VideoFacts) -> list[dict[str, Any]]:
    """Per consent state (never which subject): the time ranges with such a face, and how many
    detections. Safe for every caller view."""
    states: dict[tuple[str, str | None], set[float]] = {}
    for face, consent in zip(facts.faces, verdict.face_consent, strict=False):
        if face.t is not None:
            states.setdefault((consent.state, consent.grant_id), set()).add(face.t)
    out = []
    for (state, grant_id), times in sorted(states.items(), key=lambda item: min(item[1])):
        per_frame = [(ref.t, {"present": 1.0 if ref.t in times else 0.0}) for ref in vf.frames]
        ranges = summarise(per_frame, {"present": 0.5}, vf.frame_interval)["present"]["ranges"]
        detections = sum(1 for f, c in zip(facts.faces, verdict.face_consent, strict=False)
                         if (c.state, c.grant_id) == (state, grant_id))
        out.append({"consent": {"grant_id": grant_id, "state": state}, "ranges": ranges,
                    "detections": detections})
    return out


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# -- the synchronous path (small videos on /v1/check and /v1/release) -----------------------------
def is_video(data: bytes) -> bool:
    """Whether an upload is a video (any container we know of, accepted or not)."""
    from gateway.media import sniff

    kind = sniff(data[:4096])
    return kind is not None and kind.startswith("video/")


async def run_upload(gw: Any, principal: Principal, body: CheckRequestBody, data: bytes,
                     action: Literal["check", "release"]) -> tuple[dict[str, Any], bytes | None]:
    """Decide (and release) a small uploaded video within the request. Videos over the policy's
    `video.sync_max_bytes` / `video.sync_max_seconds` get 413 pointing to /v1/jobs. Returns the
    appended record and, on an allowed release, the signed MP4."""
    import secrets
    import tempfile

    runtime, _ = DecisionService(gw).runtime_for(principal.tenant)
    vs = runtime.policy.video
    to_jobs = "; send it to POST /v1/jobs instead (same multipart, answered 202 with a job id)"
    if len(data) > vs.sync_max_bytes:
        raise TooLarge(f"the video is {len(data)} bytes; /v1/{action} takes videos up to {vs.sync_max_bytes} "
                       f"bytes{to_jobs}", code="video_too_large")
    scratch = gw.settings.data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        src = Path(tmp) / "input"
        await asyncio.to_thread(src.write_bytes, data)
        info = await asyncio.to_thread(probe, src, vs)
        if info.duration_s > vs.sync_max_seconds:
            raise TooLarge(f"the video lasts {info.duration_s:.1f} s; /v1/{action} takes videos up to "
                           f"{vs.sync_max_seconds:g} s{to_jobs}", code="video_too_large")
        run = VideoRun(principal, body, action, src, Path(tmp), secrets.token_hex(16),
                       body.request_id or secrets.token_hex(16))
        outcome = await VideoPipeline(gw).run(run)
        output = await asyncio.to_thread(outcome.output.read_bytes) if outcome.output is not None else None
    return outcome.record, output
