"""Why: a video's facts carry time and are gathered while the decode pass runs — faces matched
against the registry batch by batch, hash-list hits kept per subject, grants read once at decision
time — and its record summarises per label and per consent state instead of listing every sampled
frame. This module is that bookkeeping; `gateway.pipeline.video` orders the pass around it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from classifiers.base import NsfwClassifier
from gateway.decision import (
    FaceFact,
    FaceMatch,
    Facts,
    GrantFact,
    HashHit,
    InheritedFact,
    ModelFailure,
    NameFact,
    NsfwFact,
    SubjectFact,
    Verdict,
    VoiceFact,
)
from gateway.pipeline.face_facts import face_fact, query_threshold
from gateway.pipeline.ports import Clock, ConsentLookup
from gateway.pipeline.record import (
    ConsentState,
    DecisionRecord,
    FaceRanges,
    MediaRef,
    NsfwFinding,
    VideoSampling,
    VideoSummary,
    build_record,
)
from gateway.pipeline.request import CheckRequest
from gateway.policy.runtime import PolicyRuntime
from gateway.policy.schema import Policy
from gateway.video.analysis import VideoFacts
from gateway.video.intake import VideoInfo
from gateway.video.sampling import LabelSummary, summarise

__all__ = ["ConsentSoFar", "PromptFacts", "match_batch", "thresholds", "video_facts", "video_record",
           "wanted_models"]

PromptFacts = tuple[tuple[NameFact, ...], dict[str, float]]


@dataclass
class ConsentSoFar:
    """Face and hash-list facts built batch by batch from the analysis (matching happens while the
    pass runs; grants are read once, at decision time)."""

    faces: list[FaceFact] = field(default_factory=list)
    hash_hits: dict[str, HashHit] = field(default_factory=dict)
    failures: list[ModelFailure] = field(default_factory=list)
    seen_faces: int = 0


def wanted_models(rt: PolicyRuntime, use: str, stage: str) -> dict[str, NsfwClassifier]:
    up = rt.policy.uses.get(use)
    rules = getattr(up, stage, None) if up is not None else None
    if rules is None:
        return {}
    aliases = [c.model for c in rules.nsfw] + [m.model for e in rules.ensembles for m in e.members]
    return {alias: rt.nsfw[alias] for alias in dict.fromkeys(aliases)}


def thresholds(policy: Policy, use: str, stage: str) -> dict[str, dict[str, float]]:
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


def match_batch(consent: ConsentLookup, rt: PolicyRuntime, facts: VideoFacts, first: int,
                acc: ConsentSoFar) -> None:
    """Match the faces and hashes the analysis found since the last batch; failures are facts."""
    face_model = rt.face.info.name
    new = facts.faces[acc.seen_faces:]
    acc.seen_faces = len(facts.faces)
    if new:
        # a face seen but not embeddable is an `unidentified` fact with its time (the policy's
        # `consent.unidentified` decides), not a model failure; the others are matched in one call
        embedded = [f for f in new if f.face.embedding is not None]
        hits: list[list[FaceMatch]] = []
        if embedded:
            try:
                matrix = np.stack([np.asarray(f.face.embedding, np.float32) for f in embedded])
                found = consent.match_faces(face_model, matrix, query_threshold(rt.policy.consent))
                hits = [[FaceMatch(m.subject_id, float(m.similarity)) for m in per_face] for per_face in found]
                if len(hits) != len(embedded):
                    raise ValueError(f"{len(hits)} answers for {len(embedded)} faces")
            except Exception as exc:  # noqa: BLE001 - the registry is down: fail closed
                acc.failures.append(ModelFailure("consent", "registry", f"{type(exc).__name__}: {exc}"))
                hits = [[] for _ in embedded]
        answers = iter(hits)
        for seen in new:
            per_face = None if seen.face.embedding is None else next(answers)
            acc.faces.append(face_fact(0, seen.face, per_face, rt.policy.consent, frame=seen.frame, t=seen.t))
    hashes = [h for per_frame in facts.hashes[first:] for h in per_frame]
    if hashes:
        try:
            for subject_id, distance in consent.hash_hits(hashes, rt.policy.hash_list.max_distance):
                best = acc.hash_hits.get(subject_id)
                if best is None or distance < best.distance:
                    acc.hash_hits[subject_id] = HashHit(0, subject_id, distance)
        except Exception as exc:  # noqa: BLE001
            acc.failures.append(ModelFailure("hash_list", "registry", f"{type(exc).__name__}: {exc}"))


def video_facts(consent: ConsentLookup, clock: Clock, rt: PolicyRuntime, request: CheckRequest, tenant: str,
                stage: str, vf: VideoFacts, acc: ConsentSoFar, prompt: PromptFacts,
                failures: list[ModelFailure], voices: tuple[VoiceFact, ...] = (),
                inherited: tuple[InheritedFact, ...] = ()) -> Facts:
    """The facts seen so far (grants read now), as `decide()` takes them; `voices` are the soundtrack's,
    `inherited` the identities of the input decision the output is bound to (issue #15.2)."""
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
    ids = sorted({m.subject_id for f in acc.faces for m in f.matches} | {n.subject_id for n in names}
                 | {m.subject_id for v in voices for m in v.matches} | {i.subject_id for i in inherited})
    grants: dict[str, tuple[GrantFact, ...]] = {}
    subjects: dict[str, SubjectFact] = {}
    if ids:
        try:
            grants, subjects = consent.grants_for(ids), consent.subject_facts(ids)
        except Exception as exc:  # noqa: BLE001
            all_failures.append(ModelFailure("consent", "registry", f"{type(exc).__name__}: {exc}"))
    return Facts(stage=stage, use=request.use, tenant=tenant, end_user=request.end_user, now=clock(),
                 media_count=1, prompt=request.prompt, nsfw=tuple(nsfw), faces=tuple(acc.faces), names=tuple(names),
                 concepts=dict(concepts), hash_hits=tuple(acc.hash_hits.values()), subjects=dict(subjects),
                 grants=grants, failures=tuple(all_failures), media_kind="video", voices=voices,
                 inherited=inherited)


def video_record(*, decision_id: str, request_id: str, rt: PolicyRuntime, digest: str, facts: Facts,
                 verdict: Verdict, vf: VideoFacts, info: VideoInfo, sha256: str) -> DecisionRecord:
    media = MediaRef(sha256, info.mime, info.width, info.height, round(info.duration_s, 6))
    limits = thresholds(rt.policy, facts.use, facts.stage)
    summary: dict[str, dict[str, LabelSummary]] = {}
    for alias in vf.nsfw:
        labels = limits.get(alias, {})
        full = vf.nsfw_summary(alias, labels)
        summary[alias] = {label: full[label] for label in sorted(labels)}
    record = build_record(
        decision_id=decision_id, request_id=request_id, facts=facts, verdict=verdict, policy=rt.policy,
        policy_digest=digest, media=[media],
        video=[VideoSummary(
            media_index=0, fps=round(info.fps, 6), frame_count=info.frame_count,
            duration_s=round(info.duration_s, 6), video_codec=info.video_codec, audio_codec=info.audio_codec,
            sampling=VideoSampling(round(1.0 / vf.frame_interval, 6), len(vf.frames),
                                   sum(1 for f in vf.frames if f.is_scene_cut),
                                   changes=sum(1 for f in vf.frames if f.reason == "change"), seed=vf.seed,
                                   phase_s=round(vf.phase, 6), change_threshold=vf.change_threshold),
            nsfw=summary, faces=face_ranges(facts, verdict, vf),
        )],
    )
    record.findings.nsfw = relevant_nsfw(record.findings.nsfw, limits)
    return record


def relevant_nsfw(entries: list[NsfwFinding], limits: Mapping[str, Mapping[str, float]]) -> list[NsfwFinding]:
    """Keep the per-frame NSFW findings a replay needs: frames where a thresholded label reaches the
    lowest threshold any rule acts on, and the frame with each label's maximum score. The per-label
    summary (max, time ranges) is in the record's `video`."""
    best: dict[tuple[str, str], tuple[float, int]] = {}
    keep: set[int] = set()
    for i, entry in enumerate(entries):
        for label, limit in limits.get(entry.model, {}).items():
            score = entry.scores.get(label)
            if score is None:
                continue
            if score >= limit:
                keep.add(i)
            key = (entry.model, label)
            if key not in best or score > best[key][0]:
                best[key] = (score, i)
    keep |= {i for _, i in best.values()}
    return [e for i, e in enumerate(entries) if i in keep]


def face_ranges(facts: Facts, verdict: Verdict, vf: VideoFacts) -> list[FaceRanges]:
    """Per consent state (never which subject): the time ranges with such a face, and how many
    detections. Safe for every caller view."""
    states: dict[tuple[str, str | None], set[float]] = {}
    for face, consent in zip(facts.faces, verdict.face_consent, strict=False):
        if face.t is not None:
            states.setdefault((consent.state, consent.grant_id), set()).add(face.t)
    out = []
    for (state, grant_id), times in sorted(states.items(), key=lambda item: min(item[1])):
        per_frame = [(ref.t, {"present": 1.0 if ref.t in times else 0.0}) for ref in vf.frames]
        ranges: Any = summarise(per_frame, {"present": 0.5}, vf.frame_interval)["present"]["ranges"]
        detections = sum(1 for f, c in zip(facts.faces, verdict.face_consent, strict=False)
                         if (c.state, c.grant_id) == (state, grant_id))
        out.append(FaceRanges(ConsentState(state, grant_id), ranges, detections))
    return out
