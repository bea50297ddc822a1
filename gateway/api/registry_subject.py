"""Why: the person in the picture must be able to see and act on their own consent without going
through anyone — read their grants and what was made under them (with proofs), revoke a grant,
take all their data away, and ask to be erased (Sora's cameo controls are the anchor; GDPR Art. 15,
17, 20). A registrar issues them a *subject access token* (`cgs_<id>_<secret>`, hashed at rest, with
an expiry) bound to exactly one subject. The token is not an API key: `get_principal` refuses it, so
it opens nothing but the routes here and the subject routes that take `RegistrarOrSubject` — and on
those only its own subject (another subject's id or grant is a 404, as if it did not exist).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import GatewayDep, Registrar, console_session
from gateway.api.uses import uses_page
from gateway.apikeys import require_role
from gateway.context import Gateway
from gateway.errors import NotFound, NotReady, Unauthorized
from gateway.registry.service import Registry

router = APIRouter(tags=["registry"])
SUBJECT_TOKEN_PREFIX = "cgs_"  # noqa: S105 - a prefix, not a secret
EXPORT_MAX_USES = 10_000


@dataclass(frozen=True)
class Caller:
    """Who calls a subject route: a registrar/admin key (`subject_id` None: any subject) or a subject
    access token bound to `subject_id`."""

    actor: str
    subject_id: str | None = None
    token_id: str | None = None

    @property
    def is_subject(self) -> bool:
        return self.subject_id is not None

    def require(self, subject_id: str) -> None:
        """404 unless this caller may see `subject_id` (a token sees only its own subject)."""
        if self.subject_id is not None and self.subject_id != subject_id:
            raise NotFound(f"subject {subject_id!r} not found")


def _registry(gw: Gateway) -> Registry:
    if gw.registry is None:
        raise NotReady("no consent registry is configured", code="registry_unavailable")
    return gw.registry


async def registrar_or_subject(request: Request, gw: GatewayDep) -> Caller:
    session = await run_in_threadpool(console_session, request, gw)  # the web console (gateway/sessions.py)
    if session is not None:
        if session.is_subject:
            return Caller(f"subject-token:{session.key_id}", session.subject_id, session.key_id)
        require_role(session.principal, "registrar")
        request.state.principal = session.principal
        return Caller(session.key_id)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing credentials: send `Authorization: Bearer <API key or subject access token>`")
    if token.startswith(SUBJECT_TOKEN_PREFIX):
        subject_id, token_id = await run_in_threadpool(_registry(gw).authenticate_access_token, token)
        return Caller(f"subject-token:{token_id}", subject_id, token_id)
    principal = gw.apikeys.authenticate(token)
    request.state.principal = principal
    require_role(principal, "registrar")
    return Caller(principal.key_id)


RegistrarOrSubject = Annotated[Caller, Depends(registrar_or_subject)]


class AccessTokenCreate(BaseModel):
    expires_in: int = Field(default=30 * 86400, ge=60, le=366 * 86400,
                            description="seconds until the token expires (default 30 days)")


@router.post("/v1/subjects/{subject_id}/access-tokens", status_code=201)
async def issue_access_token(subject_id: str, body: AccessTokenCreate, gw: GatewayDep,
                             who: Registrar) -> dict[str, Any]:
    """Issue the subject's own access token (shown once): `{token, token_id, subject_id, expires_at}`.
    The ledger records who issued it and until when."""
    return await run_in_threadpool(_registry(gw).issue_access_token, subject_id, body.expires_in, who.key_id)


@router.get("/v1/subjects/{subject_id}/export")
async def export_subject(subject_id: str, gw: GatewayDep, caller: RegistrarOrSubject) -> dict[str, Any]:
    """All the subject's data as JSON: profile, enrolment metadata, grants, access tokens issued,
    their consent history (ledger entries) and every use with its receipt — never templates,
    images or hash values. For a subject token, uses carry no full decision record (it may name
    other people)."""
    caller.require(subject_id)
    reg = _registry(gw)
    data = await run_in_threadpool(reg.export_subject, subject_id)

    def history_and_uses() -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        history: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page, cursor = gw.audit.query(subject=subject_id, cursor=cursor, limit=1000)
            history.extend(e.to_record() for e in page if e.record.get("kind") != "decision")
            if cursor is None:
                break
        uses: list[dict[str, Any]] = []
        ucursor: str | None = None
        while len(uses) < EXPORT_MAX_USES:
            got = uses_page(gw.audit, subject_id=subject_id, cursor=ucursor, limit=1000,
                            with_record=not caller.is_subject)
            uses.extend(got["uses"])
            ucursor = got["next_cursor"]
            if ucursor is None:
                break
        return history, uses, ucursor is not None

    history, uses, truncated = await run_in_threadpool(history_and_uses)
    return {**data, "history": history, "uses": uses, "uses_truncated": truncated,
            "audit_origin": gw.audit.origin}


@router.post("/v1/subjects/{subject_id}/erasure-requests", response_model=None)
async def request_erasure(subject_id: str, gw: GatewayDep, caller: RegistrarOrSubject) -> Any:
    """The subject asks to be erased. With CONSENTGATE_SUBJECT_ERASURE=immediate it happens now (200,
    the erasure receipt); by default (`queued`) it waits for a registrar (202, the request, listed at
    `GET /v1/erasure-requests`; a ledger entry records when it was asked)."""
    caller.require(subject_id)
    reg = _registry(gw)
    if gw.settings.extra.get("subject_erasure", "queued") == "immediate":
        return await run_in_threadpool(reg.erase, subject_id, caller.actor)
    queued = await run_in_threadpool(reg.request_erasure, subject_id, caller.token_id or caller.actor)
    return JSONResponse(queued, status_code=202)


@router.get("/v1/erasure-requests")
async def erasure_requests(gw: GatewayDep, _: Registrar) -> dict[str, Any]:
    """Erasures subjects asked for and that no registrar carried out yet (erasing the subject with
    `DELETE /v1/subjects/{id}` removes its request)."""
    return {"requests": await run_in_threadpool(_registry(gw).erasure_requests)}
