"""Why: the decision record is what the audit log stores and what callers get back, so it is built
in one place from the verdict and the facts — digests and scores, never media bytes, embeddings or
(unless the policy opts in) prompt text — and stays a typed `DecisionRecord` while the pipeline
works on it (release adds outputs or turns it into a deny; the append fills `audit`).

`to_dict()` is its one serialisation. The audit leaf hash is taken over the canonical JSON of that
dict, so its shape is a contract (ARCHITECTURE.md "Decision record"): keys that are optional are
*absent* when unset (never null), nullable keys are always present. `caller_view` cuts a
serialised record down per caller (records come back from the log and the job table as dicts).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

from gateway.decision import Facts, Reason, Verdict
from gateway.decision.verdict import FaceConsent
from gateway.policy.schema import Policy
from gateway.video.sampling import LabelSummary

__all__ = [
    "AuditRef", "ConceptFinding", "ConsentState", "DecisionRecord", "FaceFinding", "FaceRanges", "Findings",
    "HashFinding", "InheritedFinding",
    "Json", "JsonObject", "MatchFinding", "MediaRef", "ModelFailureFinding", "NameFinding", "NsfwFinding",
    "Obligation", "OutputRef", "PolicyRef", "VideoOutput", "VideoSampling", "VideoSummary", "build_record",
    "caller_view", "flagged_labels", "rfc3339",
]

Json: TypeAlias = "str | int | float | bool | None | list[Json] | dict[str, Json]"
JsonObject: TypeAlias = "dict[str, Json]"
Obligation: TypeAlias = "str | dict[str, Json]"  # "watermark" | "sign" | {"blur": [...]}


def rfc3339(ts: datetime) -> str:
    return ts.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class PolicyRef:
    name: str
    digest: str

    def to_dict(self) -> JsonObject:
        return {"name": self.name, "digest": self.digest}


@dataclass
class MediaRef:
    """One input part, by digest. `duration` only for time-based media."""

    sha256: str
    type: str
    width: int
    height: int
    duration: float | None = None

    def to_dict(self) -> JsonObject:
        out: JsonObject = {"sha256": self.sha256, "type": self.type, "width": self.width, "height": self.height}
        if self.duration is not None:
            out["duration"] = self.duration
        return out


@dataclass
class NsfwFinding:
    media_index: int
    model: str
    adapter: str
    model_version: str
    scores: dict[str, float]
    labels: list[str]
    t: float | None = None
    frame: int | None = None

    def to_dict(self) -> JsonObject:
        out: JsonObject = {
            "media_index": self.media_index, "model": self.model, "adapter": self.adapter,
            "model_version": self.model_version, "scores": dict(self.scores), "labels": list(self.labels),
        }
        if self.t is not None:
            out["t"], out["frame"] = self.t, self.frame
        return out


@dataclass
class ConsentState:
    state: str
    grant_id: str | None = None

    def to_dict(self) -> JsonObject:
        return {"grant_id": self.grant_id, "state": self.state}


@dataclass
class MatchFinding:
    subject_id: str
    similarity: float

    def to_dict(self) -> JsonObject:
        return {"subject_id": self.subject_id, "similarity": self.similarity}


@dataclass
class FaceFinding:
    media_index: int
    bbox: list[int]
    det_score: float
    matches: list[MatchFinding]
    consent: ConsentState
    t: float | None = None
    frame: int | None = None
    unidentified: str | None = None  # why the face could not be identified; the key is absent when None
    size_px: int | None = None  # the box's shorter side; recorded with `unidentified`

    def to_dict(self) -> JsonObject:
        out: JsonObject = {
            "media_index": self.media_index, "bbox": list(self.bbox), "det_score": self.det_score,
            "matches": [m.to_dict() for m in self.matches], "consent": self.consent.to_dict(),
        }
        if self.t is not None:
            out["t"], out["frame"] = self.t, self.frame
        if self.unidentified is not None:
            out["unidentified"] = {"why": self.unidentified, "size_px": self.size_px}
        return out


@dataclass
class VoiceFinding:
    """A stretch of speech (seconds into the audio, or into a video's soundtrack) and who it matched."""

    media_index: int
    start: float
    end: float
    matches: list[MatchFinding]
    consent: ConsentState
    unidentified: str | None = None  # the key is absent when None

    def to_dict(self) -> JsonObject:
        out: JsonObject = {
            "media_index": self.media_index, "start": self.start, "end": self.end,
            "matches": [m.to_dict() for m in self.matches], "consent": self.consent.to_dict(),
        }
        if self.unidentified is not None:
            out["unidentified"] = {"why": self.unidentified}
        return out


@dataclass
class NameFinding:
    """An enrolled subject named in the prompt."""

    subject_id: str
    consent: ConsentState

    def to_dict(self) -> JsonObject:
        return {"subject_id": self.subject_id, "consent": self.consent.to_dict()}


@dataclass
class InheritedFinding:
    """An enrolled subject the input decision found in the reference (issue #15.2), checked again for
    this output: `source` is face | voice | name."""

    subject_id: str
    source: str
    consent: ConsentState

    def to_dict(self) -> JsonObject:
        return {"subject_id": self.subject_id, "source": self.source, "consent": self.consent.to_dict()}


@dataclass
class ConceptFinding:
    """The prompt's similarity to one of the policy's semantic concepts."""

    concept: str
    similarity: float

    def to_dict(self) -> JsonObject:
        return {"concept": self.concept, "similarity": self.similarity}


@dataclass
class HashFinding:
    media_index: int
    subject_id: str
    distance: int

    def to_dict(self) -> JsonObject:
        return {"media_index": self.media_index, "subject_id": self.subject_id, "distance": self.distance}


@dataclass
class ModelFailureFinding:
    check: str
    model: str
    message: str

    def to_dict(self) -> JsonObject:
        return {"check": self.check, "model": self.model, "message": self.message}


@dataclass
class Findings:
    nsfw: list[NsfwFinding] = field(default_factory=list)
    faces: list[FaceFinding] = field(default_factory=list)
    prompt: list[NameFinding | ConceptFinding] = field(default_factory=list)
    hashes: list[HashFinding] = field(default_factory=list)
    shadow: list[JsonObject] = field(default_factory=list)
    failures: list[ModelFailureFinding] = field(default_factory=list)  # the key is absent when empty
    voices: list[VoiceFinding] | None = None  # the key is absent when no audio was checked
    inherited: list[InheritedFinding] = field(default_factory=list)  # the key is absent when empty

    def to_dict(self) -> JsonObject:
        out: JsonObject = {
            "nsfw": [f.to_dict() for f in self.nsfw],
            "faces": [f.to_dict() for f in self.faces],
            "prompt": [p.to_dict() for p in self.prompt],
            "hashes": [h.to_dict() for h in self.hashes],
            "shadow": [dict(s) for s in self.shadow],
        }
        if self.failures:
            out["failures"] = [f.to_dict() for f in self.failures]
        if self.voices is not None:
            out["voices"] = [v.to_dict() for v in self.voices]
        if self.inherited:
            out["inherited"] = [i.to_dict() for i in self.inherited]
        return out


@dataclass
class OutputRef:
    """A released file, by digest, with what leads back to this decision."""

    media_index: int
    sha256: str
    type: str
    manifest_digest: str | None = None
    watermark_id: str | None = None  # "method:id"
    watermark_version: str | None = None  # the mark's version (gateway.provenance.marks)

    def to_dict(self) -> JsonObject:
        out: JsonObject = {"media_index": self.media_index, "sha256": self.sha256, "type": self.type}
        if self.manifest_digest:
            out["manifest_digest"] = self.manifest_digest
        if self.watermark_id is not None:
            out["watermark_id"] = self.watermark_id
        if self.watermark_version is not None:
            out["watermark_version"] = self.watermark_version
        return out


@dataclass
class VideoSampling:
    """How the frames the models saw were picked: `fps` on a grid offset by `phase_s` (derived
    from `seed`, drawn per job, so a replay samples the same frames), plus `scene_cuts` frames
    that start a scene and `changes` frames that moved `change_threshold` from the last analysed one."""

    fps: float
    frames: int
    scene_cuts: int
    changes: int = 0
    seed: str | None = None
    phase_s: float = 0.0
    change_threshold: float | None = None

    def to_dict(self) -> JsonObject:
        return {"fps": self.fps, "frames": self.frames, "scene_cuts": self.scene_cuts, "changes": self.changes,
                "seed": self.seed, "phase_s": self.phase_s, "change_threshold": self.change_threshold}


@dataclass
class VideoOutput:
    """The released MP4 (set on an allowed video release)."""

    frame_count: int
    duration_s: float
    fps: float
    width: int
    height: int
    audio: str | None
    codec: str
    crf: int
    preset: str
    watermark: JsonObject | None

    def to_dict(self) -> JsonObject:
        return {
            "frame_count": self.frame_count, "duration_s": self.duration_s, "fps": self.fps, "width": self.width,
            "height": self.height, "audio": self.audio, "codec": self.codec, "crf": self.crf,
            "preset": self.preset, "watermark": self.watermark,
        }


@dataclass
class FaceRanges:
    """Where faces of one consent state appear in a video (never which subject)."""

    consent: ConsentState
    ranges: list[list[float]]
    detections: int

    def to_dict(self) -> JsonObject:
        return {"consent": self.consent.to_dict(), "ranges": [list(r) for r in self.ranges],
                "detections": self.detections}


@dataclass
class VideoSummary:
    """What a video record adds: the source's timing, the sampling, per-label NSFW summaries (max and
    time ranges) and per-consent-state face ranges (never which subject)."""

    media_index: int
    fps: float
    frame_count: int
    duration_s: float
    video_codec: str
    audio_codec: str | None
    sampling: VideoSampling
    nsfw: dict[str, dict[str, LabelSummary]]
    faces: list[FaceRanges]
    output: VideoOutput | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "media_index": self.media_index, "fps": self.fps, "frame_count": self.frame_count,
            "duration_s": self.duration_s, "video_codec": self.video_codec, "audio_codec": self.audio_codec,
            "sampling": self.sampling.to_dict(),
            "nsfw": {alias: {label: dict(s) for label, s in labels.items()} for alias, labels in self.nsfw.items()},
            "faces": [f.to_dict() for f in self.faces],
        }
        if self.output is not None:
            out["output"] = self.output.to_dict()
        return out


@dataclass
class AuditRef:
    """Where the record landed in the audit log (filled by the append)."""

    index: int
    leaf_hash: str
    checkpoint: JsonObject | None

    def to_dict(self) -> JsonObject:
        return {"index": self.index, "leaf_hash": self.leaf_hash, "checkpoint": self.checkpoint}


@dataclass
class DecisionRecord:
    decision_id: str
    decision: str
    request_id: str
    stage: str
    use: str
    tenant: str
    end_user: str | None
    created_at: str
    policy: PolicyRef
    reasons: list[Reason]
    media: list[MediaRef]
    findings: Findings
    obligations: list[Obligation]
    grant_ids: list[str]
    outputs: list[OutputRef] = field(default_factory=list)
    kind: Literal["decision"] = "decision"
    video: list[VideoSummary] = field(default_factory=list)  # the key is absent when empty
    prompt: str | None = None  # only when the policy logs prompt text
    software_agent: JsonObject | None = None  # the upstream model of a proxied release
    input_decision_id: str | None = None  # the input decision an output is bound to (#15.2); absent when None
    audit: AuditRef | None = None

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    def deny(self, reason: Reason) -> None:
        """Turn the decision into a deny (a release stage failed): nothing will be released."""
        self.decision = "deny"
        self.obligations = []
        self.outputs = []
        self.reasons.append(reason)

    def to_dict(self, *, with_audit: bool = True) -> dict[str, Any]:
        """The serialised record; `with_audit=False` is what the audit log hashes and stores."""
        out: dict[str, Any] = {
            "decision_id": self.decision_id, "kind": self.kind, "decision": self.decision,
            "request_id": self.request_id, "stage": self.stage, "use": self.use, "tenant": self.tenant,
            "end_user": self.end_user, "created_at": self.created_at, "policy": self.policy.to_dict(),
            "reasons": [r.as_dict() for r in self.reasons], "media": [m.to_dict() for m in self.media],
            "findings": self.findings.to_dict(),
            "obligations": [o if isinstance(o, str) else dict(o) for o in self.obligations],
            "grant_ids": list(self.grant_ids), "outputs": [o.to_dict() for o in self.outputs],
        }
        if self.video:
            out["video"] = [v.to_dict() for v in self.video]
        if self.prompt is not None:
            out["prompt"] = self.prompt
        if self.software_agent:
            out["software_agent"] = dict(self.software_agent)
        if self.input_decision_id is not None:
            out["input_decision_id"] = self.input_decision_id
        if with_audit and self.audit is not None:
            out["audit"] = self.audit.to_dict()
        return out


def flagged_labels(policy: Policy, use: str, stage: str, model: str, scores: dict[str, float]) -> list[str]:
    up = policy.uses.get(use)
    rules = getattr(up, stage, None) if up is not None else None
    out: set[str] = set()
    for check in getattr(rules, "nsfw", []) or []:
        if check.model != model:
            continue
        for label, thr in check.labels.items():
            limits = [v for v in (thr.deny, thr.review) if v is not None]
            if label in scores and limits and scores[label] >= min(limits):
                out.add(label)
    return sorted(out)


def _consent(state: FaceConsent) -> ConsentState:
    return ConsentState(state=state.state, grant_id=state.grant_id)


def _obligations(verdict: Verdict) -> list[Obligation]:
    obligations: list[Obligation] = []
    if "watermark" in verdict.obligations:
        obligations.append("watermark")
    if verdict.obligations.get("sign"):
        obligations.append("sign")
    if "blur" in verdict.obligations:
        obligations.append({"blur": verdict.obligations["blur"]})
    return obligations


def build_record(
    *,
    decision_id: str,
    request_id: str,
    facts: Facts,
    verdict: Verdict,
    policy: Policy,
    policy_digest: str,
    media: list[MediaRef],
    video: list[VideoSummary] | None = None,
) -> DecisionRecord:
    nsfw = [
        NsfwFinding(
            media_index=f.media_index, model=f.model, adapter=f.adapter, model_version=f.model_version,
            scores={k: round(float(v), 6) for k, v in sorted(f.scores.items())},
            labels=flagged_labels(policy, facts.use, facts.stage, f.model, f.scores),
            t=f.t, frame=f.frame if f.t is not None else None,
        )
        for f in facts.nsfw
    ]
    faces = [
        FaceFinding(
            media_index=face.media_index, bbox=list(face.bbox), det_score=round(face.det_score, 4),
            matches=[MatchFinding(m.subject_id, round(m.similarity, 4)) for m in face.matches],
            consent=_consent(consent), t=face.t, frame=face.frame if face.t is not None else None,
            unidentified=face.unidentified if consent.state == "unidentified" else None,
            size_px=face.size_px if consent.state == "unidentified" else None,
        )
        for face, consent in zip(facts.faces, verdict.face_consent, strict=False)
    ]
    voices = [
        VoiceFinding(
            media_index=v.media_index, start=round(v.start, 3), end=round(v.end, 3),
            matches=[MatchFinding(m.subject_id, round(m.similarity, 4)) for m in v.matches],
            consent=_consent(consent), unidentified=v.unidentified if consent.state == "unidentified" else None,
        )
        for v, consent in zip(facts.voices, verdict.voice_consent, strict=False)
    ]
    prompt: list[NameFinding | ConceptFinding] = [
        NameFinding(n.subject_id, _consent(c)) for n, c in zip(facts.names, verdict.name_consent, strict=False)
    ]
    prompt += [ConceptFinding(k, round(v, 4)) for k, v in sorted(facts.concepts.items())]
    findings = Findings(
        nsfw=nsfw, faces=faces, prompt=prompt,
        hashes=[HashFinding(h.media_index, h.subject_id, h.distance) for h in facts.hash_hits],
        shadow=[dict(s) for s in verdict.shadow],
        failures=[ModelFailureFinding(f.check, f.model, f.message) for f in facts.failures],
        voices=voices if (voices or facts.media_kind == "audio") else None,
        inherited=[InheritedFinding(i.subject_id, i.source, _consent(c))
                   for i, c in zip(facts.inherited, verdict.inherited_consent, strict=False)],
    )
    return DecisionRecord(
        decision_id=decision_id, decision=verdict.decision, request_id=request_id, stage=facts.stage,
        use=facts.use, tenant=facts.tenant, end_user=facts.end_user, created_at=rfc3339(facts.now),
        policy=PolicyRef(policy.name, policy_digest), reasons=list(verdict.reasons), media=media,
        findings=findings, obligations=_obligations(verdict), grant_ids=list(verdict.grant_ids),
        video=list(video or []),
        prompt=facts.prompt if policy.logging.prompt_text and facts.prompt is not None else None,
    )


_SIMILARITY = re.compile(r"similarity (-?[0-9]+(\.[0-9]+)?)")
_BITS = re.compile(r"within [0-9]+ bits of")


def caller_view(record: dict[str, Any], *, tenant: str, is_operator: bool) -> dict[str, Any]:
    """What a generator — and a tenant's auditor — sees: per face the consent state, but not which
    subject matched unless it holds a grant from that subject (no probing the registry via
    /v1/check), no hash-list subject ids, and never a similarity or a hash distance, not even for
    its own grants: a number would let a client tune an image (or a prompt) until it passes
    (issue #15.6). Operator keys and the audit log itself see everything."""
    if is_operator:
        return record
    view = copy.deepcopy(record)
    findings = view.get("findings", {})
    for face in [*findings.get("faces", []), *findings.get("voices", [])]:
        if face.get("consent", {}).get("state") != "granted":
            face["matches"] = []
        else:
            face["matches"] = [{k: v for k, v in m.items() if k != "similarity"} for m in face.get("matches", [])]
    for item in [*findings.get("prompt", []), *findings.get("inherited", [])]:
        if "subject_id" in item and item.get("consent", {}).get("state") != "granted":
            item["subject_id"] = None
        for number in ("similarity", "score"):
            item.pop(number, None)
    for hit in findings.get("hashes", []):
        hit["subject_id"] = None
        hit.pop("distance", None)
    for item in findings.get("shadow", []):
        if str(item.get("rule", "")).startswith("prompt.concept."):
            item.pop("score", None)
    for reason in view.get("reasons", []):
        detail = reason.get("detail")
        if isinstance(detail, str):
            detail = _SIMILARITY.sub("similarity", detail)
            reason["detail"] = _BITS.sub("near", detail)
    return view
