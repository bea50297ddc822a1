"""Why: registrars manage the consent registry over HTTP — subjects, enrolment, grants, hash lists,
erasure — with the same service the CLI and the pipeline use. Handlers are thin: decode, call the
`Registry`; its errors become statuses in one place (gateway.api.errors: 422 for a refused enrolment,
404, 503 when the registry is down). Templates, images and ciphertexts never appear in a response.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from classifiers.base import ModelError
from gateway.api.deps import GatewayDep, Registrar
from gateway.api.forms import read_capped
from gateway.api.registry_subject import RegistrarOrSubject
from gateway.api.uses import uses_page
from gateway.audio.intake import AudioLimits, decode_audio
from gateway.context import Gateway
from gateway.errors import BadInput, Invalid, NotReady
from gateway.media import decode_image
from gateway.registry import errors as reg_errors
from gateway.registry.models import (
    EnrolmentResult,
    GrantPublic,
    HashAddResult,
    SubjectPublic,
    VoiceEnrolmentResult,
)
from gateway.registry.service import Registry

router = APIRouter(tags=["registry"])
T = TypeVar("T")
MAX_ENROL_IMAGES = 10
MAX_HASHES = 1000


class SubjectCreate(BaseModel):
    display_name: str = Field(min_length=1, max_length=200)
    aliases: list[str] = Field(default_factory=list, max_length=50)
    protected: bool = False


class GrantCreate(BaseModel):
    grantee_tenant: str = Field(min_length=1, max_length=200)
    grantee_end_user: str | None = Field(default=None, max_length=200)
    uses: list[str] = Field(min_length=1, max_length=50)
    expires_at: datetime | None = None
    valid_from: datetime | None = None
    allow_new_tenant: bool = Field(default=False, description=(
        "Record consent for a grantee tenant that has no API keys and is not declared yet "
        "(otherwise such a grant is refused: it would admit nobody)."))


class HashesCreate(BaseModel):
    hashes: list[str] = Field(min_length=1, max_length=MAX_HASHES)


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a registry call off the event loop. A face model that fails during enrolment is the
    registry being unavailable; the app maps registry errors to statuses (gateway.api.errors)."""

    def run() -> T:
        try:
            return fn(*args, **kwargs)
        except ModelError as exc:
            raise reg_errors.RegistryUnavailable(str(exc)) from exc

    return await run_in_threadpool(run)


def _registry(gw: Gateway) -> Registry:
    if gw.registry is None:
        raise NotReady("no consent registry is configured", code="registry_unavailable")
    return gw.registry


async def _own_grant(gw: Gateway, caller: RegistrarOrSubject, grant_id: str) -> GrantPublic:
    """The grant, if the caller may act on it (a subject token: only its own subject's grants; else 404)."""
    grant = await _call(_registry(gw).get_grant, grant_id)
    if caller.is_subject and grant.subject_id != caller.subject_id:
        raise reg_errors.GrantNotFound(grant_id)
    return grant


@router.post("/v1/subjects", status_code=201)
async def create_subject(body: SubjectCreate, gw: GatewayDep, who: Registrar) -> SubjectPublic:
    reg = _registry(gw)
    return await _call(reg.create_subject, body.display_name, body.aliases, body.protected, who.key_id)


@router.get("/v1/subjects")
async def list_subjects(
    gw: GatewayDep, _: Registrar, offset: int = Query(0, ge=0, le=2**62), limit: int = Query(100, ge=1, le=1000)
) -> dict[str, list[SubjectPublic]]:
    return {"subjects": await _call(_registry(gw).list_subjects, offset, limit)}


@router.get("/v1/subjects/{subject_id}")
async def get_subject(subject_id: str, gw: GatewayDep, caller: RegistrarOrSubject) -> SubjectPublic:
    caller.require(subject_id)
    return await _call(_registry(gw).get_subject, subject_id)


@router.delete("/v1/subjects/{subject_id}")
async def erase_subject(subject_id: str, gw: GatewayDep, who: Registrar) -> dict[str, Any]:
    """Erase (crypto-shred) the subject; the erasure receipt is appended to the audit log in the
    deletion's transaction (503 `registry_unavailable` and nothing deleted when it cannot be)."""
    return await _call(_registry(gw).erase, subject_id, who.key_id)


def _notice_version(notice_version: str | None, request: str | None) -> str:
    """The notice version of a face or voice enrolment: the form field, or `request` as JSON."""
    notice = notice_version
    if notice is None and request:
        try:
            notice = json.loads(request).get("notice_version")
        except (ValueError, AttributeError) as exc:
            raise BadInput("part `request` must be a JSON object") from exc
    if not notice:
        raise Invalid("notice_version is required: the version of the notice the person accepted")
    return str(notice)


@router.post("/v1/subjects/{subject_id}/faces", status_code=201)
async def enroll(
    subject_id: str,
    gw: GatewayDep,
    who: Registrar,
    media: list[UploadFile] = File(..., description="1 to 10 images, each showing exactly one face"),
    notice_version: str | None = Form(None, description="version of the notice/consent text accepted"),
    request: str | None = Form(None, description='alternatively JSON: {"notice_version": "..."}'),
) -> EnrolmentResult:
    notice = _notice_version(notice_version, request)
    if not 1 <= len(media) <= MAX_ENROL_IMAGES:
        raise Invalid(
            f"enrolment takes 1 to {MAX_ENROL_IMAGES} images, got {len(media)}",
            details={"reason": "image_count"},
        )
    images = []
    for i, part in enumerate(media):
        data = await read_capped(part, gw.limits.max_bytes, i)
        images.append((await run_in_threadpool(decode_image, data, gw.limits, index=i)).working)
    return await _call(_registry(gw).enroll, subject_id, images, notice, who.key_id)


@router.post("/v1/subjects/{subject_id}/voices", status_code=201)
async def enroll_voice(
    subject_id: str,
    gw: GatewayDep,
    who: Registrar,
    media: list[UploadFile] = File(..., description="1 to 10 audio clips (WAV, FLAC, MP3, Ogg, M4A), each with at "
                                   "least 3 s of one person's speech"),
    notice_version: str | None = Form(None, description="version of the notice/consent text accepted"),
    request: str | None = Form(None, description='alternatively JSON: {"notice_version": "..."}'),
) -> VoiceEnrolmentResult:
    """Enrol the subject's voice (issue #18). 422 with `reason` no_speech | too_little_speech |
    multiple_speakers | clip_count when the clips cannot show one person's voice."""
    notice = _notice_version(notice_version, request)
    if not 1 <= len(media) <= MAX_ENROL_IMAGES:
        raise Invalid(f"voice enrolment takes 1 to {MAX_ENROL_IMAGES} clips, got {len(media)}",
                      details={"reason": "clip_count"})
    limits = AudioLimits(max_bytes=gw.limits.max_bytes)
    clips = []
    for i, part in enumerate(media):
        data = await read_capped(part, gw.limits.max_bytes, i)
        clips.append((await run_in_threadpool(decode_audio, data, limits, index=i)).samples)
    return await _call(_registry(gw).enroll_voice, subject_id, clips, notice, who.key_id)


@router.post("/v1/subjects/{subject_id}/grants", status_code=201)
async def create_grant(subject_id: str, body: GrantCreate, gw: GatewayDep, who: Registrar) -> GrantPublic:
    return await _call(
        _registry(gw).grant,
        subject_id,
        body.grantee_tenant,
        body.grantee_end_user,
        body.uses,
        body.expires_at,
        body.valid_from,
        who.key_id,
        allow_new_tenant=body.allow_new_tenant,
    )


@router.get("/v1/subjects/{subject_id}/grants")
async def list_grants(subject_id: str, gw: GatewayDep, caller: RegistrarOrSubject) -> dict[str, list[GrantPublic]]:
    caller.require(subject_id)
    return {"grants": await _call(_registry(gw).list_grants, subject_id)}


@router.delete("/v1/grants/{grant_id}")
async def revoke_grant(grant_id: str, gw: GatewayDep, caller: RegistrarOrSubject) -> dict[str, Any]:
    """Revoke the grant (idempotent; the subject may revoke their own) and answer with it and what was
    made under it: the first page of its uses with receipts (`uses`, `uses_next_cursor` →
    `GET /v1/grants/{id}/uses?cursor=`)."""
    await _own_grant(gw, caller, grant_id)
    grant = await _call(_registry(gw).revoke, grant_id, caller.actor)
    page = await run_in_threadpool(lambda: uses_page(gw.audit, subject_id=grant.subject_id, grant_id=grant.id,
                                                     limit=100, with_record=not caller.is_subject))
    return {**grant.model_dump(mode="json"), "uses": page["uses"], "uses_next_cursor": page["next_cursor"]}


@router.get("/v1/grants/{grant_id}/uses")
async def grant_uses(
    grant_id: str,
    gw: GatewayDep,
    caller: RegistrarOrSubject,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Every decision made under this grant, oldest first, each with its outputs (sha256, watermark
    id, manifest digest) and its receipt (audit index, inclusion proof, signed checkpoint)."""
    grant = await _own_grant(gw, caller, grant_id)
    try:
        return await run_in_threadpool(lambda: uses_page(gw.audit, subject_id=grant.subject_id, grant_id=grant.id,
                                                         cursor=cursor, limit=limit,
                                                         with_record=not caller.is_subject))
    except ValueError as exc:
        raise BadInput(str(exc)) from exc


@router.post(
    "/v1/subjects/{subject_id}/hashes",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": HashesCreate.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "media": {"type": "array", "items": {"type": "string", "format": "binary"}}
                        },
                    }
                },
            }
        }
    },
)
async def add_hashes(subject_id: str, request: Request, gw: GatewayDep, who: Registrar) -> HashAddResult:
    """PDQ hashes as JSON `{"hashes": [hex, ...]}`, or images as multipart `media` parts (hashed on
    receipt; the images are discarded)."""
    reg = _registry(gw)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=MAX_HASHES)
        parts = [p for p in form.getlist("media") if not isinstance(p, str)]
        if not parts:
            raise Invalid("no `media` parts given")
        images = []
        for i, part in enumerate(parts):
            data = await read_capped(part, gw.limits.max_bytes, i)  # type: ignore[arg-type]
            images.append((await run_in_threadpool(decode_image, data, gw.limits, index=i)).rgb)
        return await _call(reg.add_hashes, subject_id, (), images, who.key_id)
    try:
        body = HashesCreate.model_validate_json(await request.body())
    except ValidationError as exc:
        raise Invalid(f'expected JSON {{"hashes": [hex, ...]}}: {exc.errors()[0].get("msg")}') from exc
    return await _call(reg.add_hashes, subject_id, body.hashes, (), who.key_id)


@router.get("/v1/subjects/{subject_id}/uses")
async def subject_uses(
    subject_id: str,
    gw: GatewayDep,
    caller: RegistrarOrSubject,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Every decision that involved this subject, oldest first, paged, each with its outputs and its
    receipt (the same items as `GET /v1/grants/{id}/uses`). The subject's consent history (ledger
    entries) is at `GET /v1/audit/entries?subject=` (and in `GET /v1/subjects/{id}/export`). A subject
    token sees the items without the full decision record, which may name other people."""
    caller.require(subject_id)
    try:
        return await run_in_threadpool(lambda: uses_page(gw.audit, subject_id=subject_id, cursor=cursor,
                                                         limit=limit, with_record=not caller.is_subject))
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
