"""Why: the sync and async clients must send the same requests and read the same answers. Each
verb is a function that returns a `Call` (method, path, httpx arguments, how to read the answer);
the clients only differ in how they run it."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from consentgate_client._errors import raise_for_answer
from consentgate_client._models import (
    AccessToken,
    ApiKey,
    AuditEntry,
    AuditPage,
    Checkpoint,
    ConsistencyProof,
    Decision,
    Enrolment,
    GeneratedImage,
    GenerateResult,
    Grant,
    InclusionProof,
    Job,
    ProvenanceReport,
    Released,
    Subject,
    SubjectUses,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and how to read its answer; run by either client."""

    method: str
    path: str
    kwargs: dict[str, Any]
    parse: Callable[[httpx.Response], T]

    def read(self, response: httpx.Response) -> T:
        raise_for_answer(response)
        return self.parse(response)


def _media(parts: Sequence[bytes], name: str = "media") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(name, (f"{name}{i}", data, "application/octet-stream")) for i, data in enumerate(parts)]


def _request(stage: str | None, use: str, prompt: str | None, end_user: str | None,
             metadata: dict[str, Any] | None, **extra: Any) -> str:
    body: dict[str, Any] = {"use": use, "metadata": metadata or {}}
    for key, value in (("stage", stage), ("prompt", prompt), ("end_user", end_user), *extra.items()):
        if value is not None:
            body[key] = value
    return json.dumps(body)


def _json(r: httpx.Response) -> Any:
    return r.json()


def _released(r: httpx.Response) -> Released:
    return Released(r.content, r.headers.get("content-type", ""), r.headers["x-decision-id"],
                    r.headers["x-decision"], int(r.headers["x-audit-index"]))


# ---- check, release, generate ----

def check(media: Sequence[bytes] = (), *, use: str, stage: str = "input", prompt: str | None = None,
          end_user: str | None = None, metadata: dict[str, Any] | None = None,
          input_decision_id: str | None = None) -> Call[Decision]:
    """`input_decision_id`: on an output check of face_swap or img2img (required there), the
    `decision_id` of the input check of the reference media."""
    kwargs: dict[str, Any] = {"data": {"request": _request(stage, use, prompt, end_user, metadata,
                                                           input_decision_id=input_decision_id)}}
    if media:
        kwargs["files"] = _media(media)
    return Call("POST", "/v1/check", kwargs, lambda r: Decision.from_json(r.json()))


def release(data: bytes, *, use: str, prompt: str | None = None, end_user: str | None = None,
            metadata: dict[str, Any] | None = None, input_decision_id: str | None = None) -> Call[Released]:
    """`input_decision_id`: required for face_swap, img2img, img2video, video2video, voice_clone
    (the input check's `decision_id`)."""
    kwargs = {"data": {"request": _request(None, use, prompt, end_user, metadata,
                                           input_decision_id=input_decision_id)}, "files": _media([data])}
    return Call("POST", "/v1/release", kwargs, _released)


def generate(route: str, prompt: str, *, images: Sequence[bytes] = (), mask: bytes | None = None, n: int = 1,
             size: str | None = None, end_user: str | None = None, response_format: str = "b64_json",
             **extra: Any) -> Call[GenerateResult]:
    body: dict[str, Any] = {"prompt": prompt, "n": n, "response_format": response_format, **extra}
    if size is not None:
        body["size"] = size
    if end_user is not None:
        body["end_user"] = end_user
    if images:
        files = _media(images) + (_media([mask], "mask") if mask is not None else [])
        kwargs: dict[str, Any] = {"data": {"request": json.dumps(body)}, "files": files}
    else:
        kwargs = {"json": body}

    def parse(r: httpx.Response) -> GenerateResult:
        doc = r.json()
        out = [GeneratedImage(i["decision_id"], int(i["audit_index"]), i.get("type", ""),
                              base64.b64decode(i["b64_json"]) if i.get("b64_json") else None, i.get("url"))
               for i in doc["images"]]
        return GenerateResult(doc["request_id"], doc["route"], doc["input_decision"], out, doc.get("withheld", []))

    return Call("POST", f"/v1/generate/{route}", kwargs, parse)


def routes() -> Call[dict[str, Any]]:
    return Call("GET", "/v1/routes", {}, _json)


# ---- jobs ----

def submit_job(data: bytes, *, use: str, action: str = "release", prompt: str | None = None,
               end_user: str | None = None, metadata: dict[str, Any] | None = None,
               webhook_url: str | None = None, input_decision_id: str | None = None) -> Call[Job]:
    request = _request(None, use, prompt, end_user, metadata, action=action, webhook_url=webhook_url,
                       input_decision_id=input_decision_id)
    return Call("POST", "/v1/jobs", {"data": {"request": request}, "files": _media([data])},
                lambda r: Job.from_json(r.json()))


def job(job_id: str) -> Call[Job]:
    return Call("GET", f"/v1/jobs/{job_id}", {}, lambda r: Job.from_json(r.json()))


def job_result(job_id: str) -> Call[Released | Decision]:
    def parse(r: httpx.Response) -> Released | Decision:
        if r.headers.get("content-type", "").startswith("application/json"):
            return Decision.from_json(r.json())
        return _released(r)

    return Call("GET", f"/v1/jobs/{job_id}/result", {}, parse)


# ---- consent registry ----

def create_subject(display_name: str, *, aliases: Sequence[str] = (), protected: bool = False) -> Call[Subject]:
    body = {"display_name": display_name, "aliases": list(aliases), "protected": protected}
    return Call("POST", "/v1/subjects", {"json": body}, lambda r: Subject.from_json(r.json()))


def subjects(offset: int = 0, limit: int = 100) -> Call[list[Subject]]:
    return Call("GET", "/v1/subjects", {"params": {"offset": offset, "limit": limit}},
                lambda r: [Subject.from_json(s) for s in r.json()["subjects"]])


def subject(subject_id: str) -> Call[Subject]:
    return Call("GET", f"/v1/subjects/{subject_id}", {}, lambda r: Subject.from_json(r.json()))


def enroll(subject_id: str, images: Sequence[bytes], *, notice_version: str) -> Call[Enrolment]:
    return Call("POST", f"/v1/subjects/{subject_id}/faces",
                {"data": {"notice_version": notice_version}, "files": _media(images)},
                lambda r: Enrolment.from_json(r.json()))


def grant(subject_id: str, *, grantee_tenant: str, uses: Sequence[str], grantee_end_user: str | None = None,
          expires_at: str | None = None) -> Call[Grant]:
    body: dict[str, Any] = {"grantee_tenant": grantee_tenant, "uses": list(uses)}
    if grantee_end_user is not None:
        body["grantee_end_user"] = grantee_end_user
    if expires_at is not None:
        body["expires_at"] = expires_at
    return Call("POST", f"/v1/subjects/{subject_id}/grants", {"json": body}, lambda r: Grant.from_json(r.json()))


def grants(subject_id: str) -> Call[list[Grant]]:
    return Call("GET", f"/v1/subjects/{subject_id}/grants", {},
                lambda r: [Grant.from_json(g) for g in r.json()["grants"]])


def revoke(grant_id: str) -> Call[Grant]:
    return Call("DELETE", f"/v1/grants/{grant_id}", {}, lambda r: Grant.from_json(r.json()))


def erase(subject_id: str) -> Call[dict[str, Any]]:
    return Call("DELETE", f"/v1/subjects/{subject_id}", {}, _json)


def subject_uses(subject_id: str, *, cursor: str | None = None, limit: int = 100) -> Call[SubjectUses]:
    """Every decision that involved the subject, with receipts (registrar, or the subject's own token)."""
    params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
    return Call("GET", f"/v1/subjects/{subject_id}/uses", {"params": params},
                lambda r: SubjectUses.from_json(r.json()))


def grant_uses(grant_id: str, *, cursor: str | None = None, limit: int = 100) -> Call[SubjectUses]:
    """What was made under one grant, with receipts."""
    params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
    return Call("GET", f"/v1/grants/{grant_id}/uses", {"params": params}, lambda r: SubjectUses.from_json(r.json()))


def issue_access_token(subject_id: str, *, expires_in: int = 30 * 86400) -> Call[AccessToken]:
    """A registrar gives the person their own access token (shown once)."""
    return Call("POST", f"/v1/subjects/{subject_id}/access-tokens", {"json": {"expires_in": expires_in}},
                lambda r: AccessToken.from_json(r.json()))


def export_subject(subject_id: str) -> Call[dict[str, Any]]:
    """All the subject's data (profile, enrolments, grants, history, uses with receipts)."""
    return Call("GET", f"/v1/subjects/{subject_id}/export", {}, _json)


def request_erasure(subject_id: str) -> Call[dict[str, Any]]:
    """The subject asks to be erased (queued for a registrar, or done at once when so configured)."""
    return Call("POST", f"/v1/subjects/{subject_id}/erasure-requests", {}, _json)


# ---- audit ----

def audit_entries(*, cursor: str | None = None, limit: int = 100, **filters: str | None) -> Call[AuditPage]:
    """filters: since, until, tenant, decision, subject, use, kind (None = not filtered)."""
    params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
    params["limit"] = limit
    if cursor:
        params["cursor"] = cursor

    def parse(r: httpx.Response) -> AuditPage:
        doc = r.json()
        return AuditPage([AuditEntry.from_json(e) for e in doc["entries"]], doc.get("next_cursor"))

    return Call("GET", "/v1/audit/entries", {"params": params}, parse)


def audit_entry(index: int) -> Call[AuditEntry]:
    return Call("GET", f"/v1/audit/entries/{int(index)}", {}, lambda r: AuditEntry.from_json(r.json()))


def receipt(decision_id: str) -> Call[dict[str, Any]]:
    """A generator's own decision's receipt: leaf hash, index, inclusion proof, signed checkpoint."""
    return Call("GET", f"/v1/audit/receipts/{decision_id}", {}, _json)


def checkpoint() -> Call[Checkpoint]:
    return Call("GET", "/v1/audit/checkpoint", {}, lambda r: Checkpoint.from_json(r.json()))


def inclusion_proof(index: int, tree_size: int | None = None) -> Call[InclusionProof]:
    params: dict[str, Any] = {"index": index, **({"tree_size": tree_size} if tree_size is not None else {})}
    return Call("GET", "/v1/audit/proofs/inclusion", {"params": params},
                lambda r: InclusionProof.from_json(r.json()))


def consistency_proof(first: int, second: int) -> Call[ConsistencyProof]:
    return Call("GET", "/v1/audit/proofs/consistency", {"params": {"first": first, "second": second}},
                lambda r: ConsistencyProof.from_json(r.json()))


# ---- provenance, keys ----

def verify(data: bytes) -> Call[ProvenanceReport]:
    return Call("POST", "/v1/provenance/verify", {"files": _media([data])},
                lambda r: ProvenanceReport.from_json(r.json()))


def create_key(tenant: str, role: str, *, name: str = "", uses: Sequence[str] | None = None) -> Call[ApiKey]:
    body: dict[str, Any] = {"tenant": tenant, "role": role, "name": name}
    if uses is not None:
        body["uses"] = list(uses)
    return Call("POST", "/v1/apikeys", {"json": body}, lambda r: ApiKey.from_json(r.json()))


def api_keys() -> Call[list[ApiKey]]:
    return Call("GET", "/v1/apikeys", {}, lambda r: [ApiKey.from_json(k) for k in r.json()["keys"]])


def restrict_key(key_id: str, uses: Sequence[str] | None) -> Call[ApiKey]:
    """Set the uses a key may request (None: every use)."""
    return Call("PATCH", f"/v1/apikeys/{key_id}", {"json": {"uses": None if uses is None else list(uses)}},
                lambda r: ApiKey.from_json(r.json()))


def revoke_key(key_id: str) -> Call[ApiKey]:
    return Call("DELETE", f"/v1/apikeys/{key_id}", {}, lambda r: ApiKey.from_json(r.json()))
