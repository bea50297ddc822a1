"""Why: callers should read `decision.faces[0].consent_state`, not `rec["findings"]["faces"][0]
["consent"]["state"]`, and a type checker should catch the typo. Each answer becomes a frozen
dataclass built by `from_json`; fields the gateway adds later stay reachable in `raw`, so an older
client never breaks on a newer gateway."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AccessToken", "ApiKey", "AuditEntry", "AuditPage", "Checkpoint", "ConsistencyProof", "Decision", "Enrolment",
    "Face",
    "GenerateResult", "GeneratedImage", "Grant", "InclusionProof", "Job", "Output", "PolicyRef",
    "ProvenanceDecision", "ProvenanceReport", "Reason", "Released", "Subject", "SubjectUses", "Use",
]

Json = dict[str, Any]


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Reason:
    rule: str
    outcome: str
    detail: str

    @classmethod
    def from_json(cls, doc: Json) -> Reason:
        return cls(str(doc.get("rule", "")), str(doc.get("outcome", "")), str(doc.get("detail", "")))


@dataclass(frozen=True)
class Face:
    """A face found in a media part, and its consent state (granted, no_grant, revoked, expired,
    protected, no_match, unidentified). `subject_ids` is empty unless your view may see them."""

    media_index: int
    bbox: list[int]
    det_score: float
    consent_state: str
    grant_id: str | None
    subject_ids: list[str]

    @classmethod
    def from_json(cls, doc: Json) -> Face:
        consent = doc.get("consent") or {}
        return cls(int(doc.get("media_index", 0)), [int(v) for v in doc.get("bbox", [])],
                   float(doc.get("det_score", 0.0)), str(consent.get("state", "")),
                   _opt_str(consent.get("grant_id")),
                   [str(m["subject_id"]) for m in doc.get("matches", []) if "subject_id" in m])


@dataclass(frozen=True)
class Output:
    """A released file: its digest, the C2PA manifest digest and the watermark id it carries."""

    media_index: int
    sha256: str
    manifest_digest: str | None
    watermark_id: str | None

    @classmethod
    def from_json(cls, doc: Json) -> Output:
        return cls(int(doc.get("media_index", 0)), str(doc.get("sha256", "")),
                   _opt_str(doc.get("manifest_digest")), _opt_str(doc.get("watermark_id")))


@dataclass(frozen=True)
class PolicyRef:
    name: str
    digest: str


@dataclass(frozen=True)
class Decision:
    """A decision record in your view. `verdict` is allow, deny or review; `audit_index` is its
    position in the signed log (None before it is appended)."""

    decision_id: str
    verdict: str
    kind: str
    stage: str | None
    use: str | None
    tenant: str | None
    created_at: str | None
    policy: PolicyRef | None
    reasons: list[Reason]
    faces: list[Face]
    outputs: list[Output]
    audit_index: int | None
    leaf_hash: str | None
    raw: Json = field(repr=False, compare=False)
    input_decision_id: str | None = None  # the input decision an output is bound to (face_swap, img2img, ...)

    @property
    def allowed(self) -> bool:
        return self.verdict == "allow"

    @classmethod
    def from_json(cls, doc: Json) -> Decision:
        policy = doc.get("policy")
        audit = doc.get("audit") or {}
        findings = doc.get("findings") or {}
        return cls(
            decision_id=str(doc.get("decision_id", "")),
            verdict=str(doc.get("decision", "")),
            kind=str(doc.get("kind", "decision")),
            stage=_opt_str(doc.get("stage")),
            use=_opt_str(doc.get("use")),
            tenant=_opt_str(doc.get("tenant")),
            created_at=_opt_str(doc.get("created_at")),
            policy=PolicyRef(str(policy.get("name", "")), str(policy.get("digest", "")))
            if isinstance(policy, dict) else None,
            reasons=[Reason.from_json(r) for r in doc.get("reasons", []) if isinstance(r, dict)],
            faces=[Face.from_json(f) for f in findings.get("faces", []) if isinstance(f, dict)],
            outputs=[Output.from_json(o) for o in doc.get("outputs", []) if isinstance(o, dict)],
            audit_index=int(audit["index"]) if audit.get("index") is not None else None,
            leaf_hash=_opt_str(audit.get("leaf_hash")),
            raw=doc,
            input_decision_id=_opt_str(doc.get("input_decision_id")),
        )


@dataclass(frozen=True)
class Released:
    """The marked and signed file `/v1/release` returned, with its decision id and audit index."""

    data: bytes
    mime: str
    decision_id: str
    decision: str
    audit_index: int


@dataclass(frozen=True)
class GeneratedImage:
    decision_id: str
    audit_index: int
    mime: str
    data: bytes | None = None
    url: str | None = None


@dataclass(frozen=True)
class GenerateResult:
    request_id: str
    route: str
    input_decision: dict[str, Any]
    images: list[GeneratedImage]
    withheld: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    """A video or long job: state queued | running | done | failed, progress 0..1."""

    job_id: str
    action: str
    state: str
    stage: str | None
    progress: float
    decision: Decision | None
    error_code: str | None
    error_message: str | None
    result_url: str | None
    raw: Json = field(repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    @classmethod
    def from_json(cls, doc: Json) -> Job:
        wrapped = doc.get("job")
        view: Json = wrapped if isinstance(wrapped, dict) else doc  # POST wraps the view
        error = view.get("error") or {}
        decision = view.get("decision")
        return cls(str(view.get("job_id", doc.get("job_id", ""))), str(view.get("action", "release")),
                   str(view.get("state", doc.get("state", ""))), _opt_str(view.get("stage")),
                   float(view.get("progress", 0.0)),
                   Decision.from_json(decision) if isinstance(decision, dict) else None,
                   _opt_str(error.get("code")), _opt_str(error.get("message")), _opt_str(view.get("result_url")),
                   view)


@dataclass(frozen=True)
class Subject:
    id: str
    display_name: str
    aliases: list[str]
    protected: bool
    created_at: str
    face_models: list[str]
    template_count: int
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: Json) -> Subject:
        return cls(str(doc["id"]), str(doc.get("display_name", "")), [str(a) for a in doc.get("aliases", [])],
                   bool(doc.get("protected", False)), str(doc.get("created_at", "")),
                   [str(m) for m in doc.get("face_models", [])], int(doc.get("template_count", 0)), doc)


@dataclass(frozen=True)
class Grant:
    """A subject's consent to one grantee tenant (and optionally one of its end users) for `uses`."""

    id: str
    subject_id: str
    grantee_tenant: str
    grantee_end_user: str | None
    uses: list[str]
    expires_at: str | None
    revoked_at: str | None
    raw: Json = field(repr=False, compare=False)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def from_json(cls, doc: Json) -> Grant:
        return cls(str(doc["id"]), str(doc.get("subject_id", "")), str(doc.get("grantee_tenant", "")),
                   _opt_str(doc.get("grantee_end_user")), [str(u) for u in doc.get("uses", [])],
                   _opt_str(doc.get("expires_at")), _opt_str(doc.get("revoked_at")), doc)


@dataclass(frozen=True)
class Enrolment:
    enrolment_id: str
    subject_id: str
    notice_version: str
    images: int
    templates: dict[str, int]
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: Json) -> Enrolment:
        return cls(str(doc.get("enrolment_id", "")), str(doc.get("subject_id", "")),
                   str(doc.get("notice_version", "")), int(doc.get("images", 0)),
                   {str(k): int(v) for k, v in (doc.get("templates") or {}).items()}, doc)


@dataclass(frozen=True)
class Use:
    """One decision that involved the subject (or was made under one grant): what it produced and the
    receipt that proves it is in the signed log (None while no checkpoint covers it)."""

    decision_id: str
    verdict: str
    tenant: str | None
    use: str | None
    created_at: str | None
    index: int
    leaf_hash: str
    grant_ids: list[str]
    outputs: list[Output]
    receipt: Json | None
    raw: Json = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: Json) -> Use:
        return cls(str(doc.get("decision_id", "")), str(doc.get("decision", "")), _opt_str(doc.get("tenant")),
                   _opt_str(doc.get("use")), _opt_str(doc.get("created_at")), int(doc.get("index", -1)),
                   str(doc.get("leaf_hash", "")), [str(g) for g in doc.get("grant_ids", [])],
                   [Output.from_json(o) for o in doc.get("outputs", []) if isinstance(o, dict)],
                   doc.get("receipt") if isinstance(doc.get("receipt"), dict) else None, doc)


@dataclass(frozen=True)
class SubjectUses:
    """A page of uses (`GET /v1/subjects/{id}/uses` or `GET /v1/grants/{id}/uses`)."""

    subject_id: str
    uses: list[Use]
    next_cursor: str | None
    grant_id: str | None = None

    @classmethod
    def from_json(cls, doc: Json) -> SubjectUses:
        return cls(str(doc.get("subject_id", "")), [Use.from_json(u) for u in doc.get("uses", [])
                                                    if isinstance(u, dict)],
                   _opt_str(doc.get("next_cursor")), _opt_str(doc.get("grant_id")))


@dataclass(frozen=True)
class AccessToken:
    """A subject access token (`cgs_...`, shown once): the person's own key to their grants and uses."""

    token: str
    token_id: str
    subject_id: str
    expires_at: str

    @classmethod
    def from_json(cls, doc: Json) -> AccessToken:
        return cls(str(doc["token"]), str(doc.get("token_id", "")), str(doc.get("subject_id", "")),
                   str(doc.get("expires_at", "")))


@dataclass(frozen=True)
class ApiKey:
    """An API key's public half. `key` (the secret) is set only in the answer to `create`."""

    id: str
    tenant: str
    role: str
    name: str
    created_at: str
    revoked_at: str | None
    key: str | None = None
    uses: list[str] | None = None  # None: every use

    @classmethod
    def from_json(cls, doc: Json) -> ApiKey:
        uses = doc.get("uses")
        return cls(str(doc["id"]), str(doc.get("tenant", "")), str(doc.get("role", "")), str(doc.get("name", "")),
                   str(doc.get("created_at", "")), _opt_str(doc.get("revoked_at")), _opt_str(doc.get("key")),
                   [str(u) for u in uses] if isinstance(uses, list) else None)


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head: `note` is the C2SP signed note, `root_hash` hex."""

    tree_size: int
    root_hash: str
    note: str

    @classmethod
    def from_json(cls, doc: Json) -> Checkpoint:
        return cls(int(doc["tree_size"]), str(doc["root_hash"]), str(doc.get("note", "")))


@dataclass(frozen=True)
class AuditEntry:
    """One log entry: its index, the record (kind decision, grant, revocation, ...), and when a
    signed checkpoint covers it, the inclusion proof up to that checkpoint."""

    index: int
    record: Json
    checkpoint: Checkpoint | None
    inclusion_proof: list[str] | None

    @property
    def decision(self) -> Decision | None:
        return Decision.from_json(self.record) if self.record.get("kind", "decision") == "decision" else None

    @classmethod
    def from_json(cls, doc: Json) -> AuditEntry:
        record = doc.get("record") or {}
        cp = (record.get("audit") or {}).get("checkpoint")
        proof = doc.get("inclusion_proof")
        return cls(int(doc["index"]), record, Checkpoint.from_json(cp) if isinstance(cp, dict) else None,
                   [str(h) for h in proof] if isinstance(proof, list) else None)


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_cursor: str | None


@dataclass(frozen=True)
class InclusionProof:
    index: int
    tree_size: int
    leaf_hash: str
    hashes: list[str]

    @classmethod
    def from_json(cls, doc: Json) -> InclusionProof:
        return cls(int(doc["index"]), int(doc["tree_size"]), str(doc.get("leaf_hash", "")),
                   [str(h) for h in doc.get("hashes", [])])


@dataclass(frozen=True)
class ConsistencyProof:
    first: int
    second: int
    first_root: str
    second_root: str
    hashes: list[str]

    @classmethod
    def from_json(cls, doc: Json) -> ConsistencyProof:
        return cls(int(doc["first"]), int(doc["second"]), str(doc.get("first_root", "")),
                   str(doc.get("second_root", "")), [str(h) for h in doc.get("hashes", [])])


@dataclass(frozen=True)
class ProvenanceDecision:
    decision_id: str
    verdict: str | None
    audit_index: int | None
    grants: list[Json]
    raw: Json = field(repr=False, compare=False)


@dataclass(frozen=True)
class ProvenanceReport:
    """What a file carries: C2PA validation, the watermark payload, and the decisions they lead to."""

    type: str
    c2pa: Json
    watermark: Json | None
    decisions: list[ProvenanceDecision]

    @classmethod
    def from_json(cls, doc: Json) -> ProvenanceReport:
        decisions = [
            ProvenanceDecision(str(d.get("decision_id", "")), _opt_str(d.get("decision")),
                               int(d["audit_index"]) if d.get("audit_index") is not None else None,
                               list(d.get("grants", [])), d)
            for d in doc.get("decisions", []) if isinstance(d, dict)
        ]
        wm = doc.get("watermark")
        return cls(str(doc.get("type", "")), dict(doc.get("c2pa") or {}), wm if isinstance(wm, dict) else None,
                   decisions)
