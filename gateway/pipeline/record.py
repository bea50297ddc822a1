"""Why: the decision record is what the audit log stores and what callers get back, so it is
built in one place from the verdict and the facts — digests and scores, never media bytes,
embeddings or (unless the policy opts in) prompt text — and cut down per caller in one place."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from gateway.decision import Facts, Verdict
from gateway.policy.schema import Policy


def rfc3339(ts: datetime) -> str:
    return ts.isoformat(timespec="microseconds").replace("+00:00", "Z")


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


def build_record(
    *,
    decision_id: str,
    request_id: str,
    facts: Facts,
    verdict: Verdict,
    policy: Policy,
    policy_digest: str,
    media: list[dict[str, Any]],
    extra_findings: dict[str, Any] | None = None,
    video: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    nsfw = [
        {
            "media_index": f.media_index,
            "model": f.model,
            "adapter": f.adapter,
            "model_version": f.model_version,
            "scores": {k: round(float(v), 6) for k, v in sorted(f.scores.items())},
            "labels": flagged_labels(policy, facts.use, facts.stage, f.model, f.scores),
            **({"t": f.t, "frame": f.frame} if f.t is not None else {}),
        }
        for f in facts.nsfw
    ]
    faces = []
    for face, consent in zip(facts.faces, verdict.face_consent, strict=False):
        entry: dict[str, Any] = {
            "media_index": face.media_index,
            "bbox": list(face.bbox),
            "det_score": round(face.det_score, 4),
            "matches": [{"subject_id": m.subject_id, "similarity": round(m.similarity, 4)} for m in face.matches],
            "consent": consent.as_dict(),
        }
        if face.t is not None:
            entry["t"], entry["frame"] = face.t, face.frame
        faces.append(entry)
    prompt: list[dict[str, Any]] = [
        {"subject_id": n.subject_id, "consent": c.as_dict()}
        for n, c in zip(facts.names, verdict.name_consent, strict=False)
    ]
    prompt += [{"concept": k, "similarity": round(v, 4)} for k, v in sorted(facts.concepts.items())]
    findings: dict[str, Any] = {
        "nsfw": nsfw,
        "faces": faces,
        "prompt": prompt,
        "hashes": [
            {"media_index": h.media_index, "subject_id": h.subject_id, "distance": h.distance}
            for h in facts.hash_hits
        ],
        "shadow": list(verdict.shadow),
    }
    if facts.failures:
        findings["failures"] = [
            {"check": f.check, "model": f.model, "message": f.message} for f in facts.failures
        ]
    if extra_findings:
        findings.update(extra_findings)
    obligations: list[Any] = []
    if "watermark" in verdict.obligations:
        obligations.append("watermark")
    if verdict.obligations.get("sign"):
        obligations.append("sign")
    if "blur" in verdict.obligations:
        obligations.append({"blur": verdict.obligations["blur"]})
    record: dict[str, Any] = {
        "decision_id": decision_id,
        "kind": "decision",
        "decision": verdict.decision,
        "request_id": request_id,
        "stage": facts.stage,
        "use": facts.use,
        "tenant": facts.tenant,
        "end_user": facts.end_user,
        "created_at": rfc3339(facts.now),
        "policy": {"name": policy.name, "digest": policy_digest},
        "reasons": [r.as_dict() for r in verdict.reasons],
        "media": media,
        "findings": findings,
        "obligations": obligations,
        "grant_ids": list(verdict.grant_ids),
        "outputs": [],
    }
    if video:
        record["video"] = video
    if policy.logging.prompt_text and facts.prompt is not None:
        record["prompt"] = facts.prompt
    return record


def caller_view(record: dict[str, Any], *, tenant: str, is_operator: bool) -> dict[str, Any]:
    """What a generator sees: per face the consent state, but not which subject matched nor the
    similarity unless it holds a grant from that subject (no probing the registry via /v1/check)."""
    if is_operator:
        return record
    view = copy.deepcopy(record)
    findings = view.get("findings", {})
    for face in findings.get("faces", []):
        if face.get("consent", {}).get("state") != "granted":
            face["matches"] = []
    for item in findings.get("prompt", []):
        if "subject_id" in item and item.get("consent", {}).get("state") != "granted":
            item["subject_id"] = None
    for hit in findings.get("hashes", []):
        hit["subject_id"] = None
    return view
