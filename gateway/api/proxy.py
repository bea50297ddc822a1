"""Why: proxy mode's HTTP surfaces. `/v1/generate/{route}` is the gateway's own shape (every
decision id in the answer); `/v1/images/generations` and `/v1/images/edits` speak the OpenAI
images API, so an existing client only changes its base URL (the route is the `model` field),
and denials come back as OpenAI-style error objects carrying the decision id. `/v1/blobs/{id}`
serves `url` answers; `/v1/routes` lists the routes. The flow is gateway.pipeline.proxy; the
request shapes and OpenAI errors are gateway.api.surface."""

from __future__ import annotations

import base64
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from gateway.api.denials import denial_response
from gateway.api.deps import GatewayDep, Generator, get_gateway, get_principal
from gateway.api.surface import (
    OpenAIStyleError,
    extras,
    loads,
    openai_denial,
    openapi_body,
    parse_generate,
    parse_openai,
    parse_speech,
)
from gateway.apikeys import Principal, require_role
from gateway.blobs import BLOB_ID
from gateway.context import Gateway
from gateway.errors import BadInput, GatewayError, Invalid, NotFound, TooLarge, Unauthorized, UnsupportedMedia
from gateway.pipeline.proxy import ProxyDenied, ProxyOutcome, ProxyRequest, ProxyService, Released
from gateway.pipeline.record import caller_view

router = APIRouter(prefix="/v1", tags=["proxy"])


# ---- reading requests, writing images ------------------------------------------------------


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").lower()


async def _form(request: Request, gw: Gateway) -> FormData:
    try:
        return await request.form(max_files=gw.settings.max_media_parts + 2, max_fields=64)
    except Exception as exc:  # noqa: BLE001 - malformed multipart is the client's error
        raise BadInput(f"could not read the multipart form: {exc}") from None


async def _read(upload: UploadFile, limit: int, what: str) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{what} is larger than the limit of {limit} bytes")
    return data


async def _files(form: FormData, keys: tuple[str, ...], limit: int) -> list[bytes]:
    parts = [p for key in keys for p in form.getlist(key)]
    if any(not isinstance(p, UploadFile) for p in parts):
        raise Invalid(f"`{keys[0]}` parts must be files")
    return [
        await _read(p, limit, f"{keys[0]} part {i}") for i, p in enumerate(parts) if isinstance(p, UploadFile)
    ]


async def _mask(form: FormData, limit: int) -> bytes | None:
    part = form.get("mask")
    return await _read(part, limit, "the mask") if isinstance(part, UploadFile) else None


def _store(gw: Gateway, request: Request, released: Released, tenant: str) -> dict[str, Any]:
    state = gw.proxy
    blob = state.blobs.put(released.data, mime=released.mime, tenant=tenant, ttl_s=state.blob_ttl_s)
    state.maybe_purge()
    # Only the configured public URL, never the request's Host header (a client could make the gateway
    # hand out links to a host of its choosing); without one the link is relative to the gateway.
    base = str(gw.settings.extra.get("public_url") or "")
    return {
        "url": f"{base.rstrip('/')}/v1/blobs/{blob.id}?{state.signer.signed_query(blob)}",
        "expires_at": int(blob.expires_at),
    }


async def _items(
    gw: Gateway, request: Request, outcome: ProxyOutcome, tenant: str, fmt: str
) -> list[dict[str, Any]]:
    items = []
    for released in outcome.released:
        if fmt == "url":
            item = await run_in_threadpool(_store, gw, request, released, tenant)
        else:
            item = {"b64_json": base64.b64encode(released.data).decode("ascii")}
        items.append(
            {
                **item,
                "type": released.mime,
                "decision_id": released.record["decision_id"],
                "audit_index": released.record["audit"]["index"],
            }
        )
    return items


def _withheld(outcome: ProxyOutcome) -> list[dict[str, Any]]:
    return [
        {"decision_id": r["decision_id"], "decision": r["decision"], "audit_index": r["audit"]["index"]}
        for r in outcome.withheld
    ]


# ---- routes -------------------------------------------------------------------------------


@router.get("/routes")
async def list_routes(gw: GatewayDep, principal: Generator) -> dict[str, Any]:
    """The routes of `policies/routes.yaml` (upstream URLs and reload errors: operator keys only)."""
    state = gw.proxy
    table = state.routes.current()
    operator = principal.is_operator(gw.settings.operator_tenant)
    routes = []
    for name, route in sorted(table.routes.items()):
        item: dict[str, Any] = {
            "name": name,
            "kind": route.kind,
            "use": route.use,
            "edit_use": route.edit_use,
            "takes_edits": route.takes_edits,
            "model": route.model.model_dump(),
            "timeout_s": route.timeout_s,
            "max_n": route.max_n,
            "max_concurrency": route.max_concurrency,
        }
        if operator:
            item["url"] = route.url
        routes.append(item)
    per_key = table.spec.limits.per_key
    out: dict[str, Any] = {
        "routes": routes,
        "default": table.spec.default,
        "limits": {"per_key": per_key.model_dump() if per_key else None},
    }
    if operator:
        out["status"] = state.routes.status()
    return out


# ---- gateway-native ----------------------------------------------------------------------


async def _native_request(request: Request, gw: Gateway, route: str) -> tuple[ProxyRequest, str]:
    limit = gw.settings.max_upload_bytes
    images: list[bytes] = []
    mask = None
    if _content_type(request).startswith("multipart/form-data"):
        form = await _form(request, gw)
        raw = form.get("request")
        if not isinstance(raw, str):
            raise Invalid("the multipart part `request` (JSON) is required")
        data = loads(raw)
        images = await _files(form, ("media",), limit)
        mask = await _mask(form, limit)
    elif _content_type(request).startswith("application/json"):
        data = loads(await request.body())
    else:
        raise UnsupportedMedia(
            "send application/json, or multipart/form-data with `request` and `media` parts"
        )
    body = parse_generate(data)
    req = ProxyRequest(
        route=route,
        prompt=body.prompt,
        end_user=body.end_user,
        n=body.n,
        size=body.size,
        images=images,
        mask=mask,
        extra=extras(body),
    )
    return req, body.response_format


@router.post(
    "/generate/{route}",
    responses={
        403: {"description": "policy_denied or review_required (input or output), with the decision record"},
        429: {"description": "rate_limited or route_busy, with Retry-After"},
        502: {"description": "upstream_error, with the decision id of the audited failure"},
    },
    openapi_extra=openapi_body("generate"),
)
async def generate(route: str, request: Request, gw: GatewayDep, principal: Generator) -> Any:
    """Input check → upstream → output check → watermark + sign → audit. JSON
    `{prompt, end_user?, n?, size?, response_format?, ...}`, or multipart with a `request` JSON part,
    `media` reference images and an optional `mask`."""
    req, fmt = await _native_request(request, gw, route)
    operator = principal.is_operator(gw.settings.operator_tenant)
    try:
        outcome = await ProxyService(gw.pipeline, gw.proxy).run(principal, req)
    except ProxyDenied as denied:
        response = denial_response(caller_view(denied.record, tenant=principal.tenant, is_operator=operator))
        response.headers["X-Request-Id"] = denied.request_id
        return response
    return JSONResponse(
        {
            "request_id": outcome.request_id,
            "route": outcome.route_name,
            "input_decision": caller_view(
                outcome.input_record, tenant=principal.tenant, is_operator=operator
            ),
            "images": await _items(gw, request, outcome, principal.tenant, fmt),
            "withheld": _withheld(outcome),
        },
        headers={"X-Request-Id": outcome.request_id},
    )


# ---- OpenAI-compatible -------------------------------------------------------------------


def openai_generator(request: Request) -> tuple[Gateway, Principal]:
    """Authentication for the OpenAI surface: the same keys and role, errors in OpenAI shape."""
    try:
        gw = get_gateway(request)
        principal = get_principal(request, gw)
        require_role(principal, "generator")
    except GatewayError as exc:
        raise OpenAIStyleError(exc) from None
    return gw, principal


OpenAICaller = Annotated[tuple[Gateway, Principal], Depends(openai_generator)]


async def _openai_answer(
    gw: Gateway, principal: Principal, request: Request, req: ProxyRequest, fmt: str
) -> Response:
    try:
        outcome = await ProxyService(gw.pipeline, gw.proxy).run(principal, req)
        items = await _items(gw, request, outcome, principal.tenant, fmt)
    except ProxyDenied as denied:
        record = denied.record
        return JSONResponse(
            openai_denial(record, denied.request_id),
            status_code=403,
            headers={
                "X-Decision-Id": record["decision_id"],
                "X-Decision": record["decision"],
                "X-Request-Id": denied.request_id,
            },
        )
    except GatewayError as exc:
        raise OpenAIStyleError(exc) from None
    images = [{k: v for k, v in item.items() if k not in ("b64_json", "url")} for item in items]
    return JSONResponse(
        {
            "created": int(time.time()),
            "data": [{k: v for k, v in item.items() if k in ("b64_json", "url")} for item in items],
            "consentgate": {
                "request_id": outcome.request_id,
                "route": outcome.route_name,
                "input_decision_id": outcome.input_record["decision_id"],
                "images": images,
                "withheld": _withheld(outcome),
            },
        },
        headers={"X-Request-Id": outcome.request_id},
    )


@router.post("/images/generations", openapi_extra=openapi_body("generations"))
async def openai_generations(request: Request, caller: OpenAICaller) -> Response:
    """OpenAI-compatible image generation; the route is the `model` field."""
    gw, principal = caller
    try:
        body = parse_openai(loads(await request.body()))
        req = ProxyRequest(
            route=body.model,
            prompt=body.prompt,
            end_user=body.end_user,
            n=body.n,
            size=body.size,
            extra=extras(body),
        )
    except GatewayError as exc:
        raise OpenAIStyleError(exc) from None
    return await _openai_answer(gw, principal, request, req, body.response_format)


@router.post("/images/edits", openapi_extra=openapi_body("edits"))
async def openai_edits(request: Request, caller: OpenAICaller) -> Response:
    """OpenAI-compatible image edit (multipart `image` / `image[]`, optional `mask`); the
    reference images are checked (use: the route's `edit_use`) before the upstream sees them."""
    gw, principal = caller
    limit = gw.settings.max_upload_bytes
    try:
        if not _content_type(request).startswith("multipart/form-data"):
            raise UnsupportedMedia("image edits take multipart/form-data")
        form = await _form(request, gw)
        body = parse_openai({k: v for k, v in form.multi_items() if isinstance(v, str)})
        images = await _files(form, ("image", "image[]"), limit)
        if not images:
            raise Invalid("an edit needs at least one `image` file")
        req = ProxyRequest(
            route=body.model,
            prompt=body.prompt,
            end_user=body.end_user,
            n=body.n,
            size=body.size,
            images=images,
            mask=await _mask(form, limit),
            extra=extras(body),
        )
    except GatewayError as exc:
        raise OpenAIStyleError(exc) from None
    return await _openai_answer(gw, principal, request, req, body.response_format)


@router.post("/audio/speech", response_class=Response,
             responses={200: {"content": {"audio/mpeg": {}, "audio/wav": {}, "audio/flac": {}, "audio/mp4": {}}},
                        403: {"description": "policy_denied or review_required (OpenAI-style error)"}})
async def openai_speech(request: Request, caller: OpenAICaller) -> Response:
    """OpenAI-compatible text to speech (route kind `openai-audio`; the route is the `model` field).
    The input text goes through the prompt rules and the name check; the returned audio through the
    voice check (enrolled voices need a grant for the route's use), then it is marked, signed and
    recorded and comes back as the audio file (Ogg/Opus as FLAC), with X-Decision-Id."""
    gw, principal = caller
    try:
        body = parse_speech(loads(await request.body()))
        service = ProxyService(gw.pipeline, gw.proxy)
        name, route = service.resolve(body.model)
        if route.kind != "openai-audio":
            raise Invalid(f"route {name!r} is of kind {route.kind}, not openai-audio: it does not make speech")
        extra: dict[str, Any] = {"voice": body.voice, "response_format": body.response_format}
        extra.update({k: v for k, v in (("speed", body.speed), ("instructions", body.instructions)) if v is not None})
        req = ProxyRequest(route=name, prompt=body.input, end_user=body.end_user, extra=extra)
    except GatewayError as exc:
        raise OpenAIStyleError(exc) from None
    try:
        outcome = await service.run(principal, req)
    except ProxyDenied as denied:
        record = denied.record
        return JSONResponse(openai_denial(record, denied.request_id), status_code=403, headers={
            "X-Decision-Id": record["decision_id"], "X-Decision": record["decision"],
            "X-Request-Id": denied.request_id})
    except GatewayError as exc:
        raise OpenAIStyleError(exc) from None
    released = outcome.released[0]
    return Response(released.data, media_type=released.mime, headers={
        "X-Decision-Id": released.record["decision_id"], "X-Decision": released.record["decision"],
        "X-Audit-Index": str(released.record["audit"]["index"]), "X-Request-Id": outcome.request_id,
        "X-Input-Decision-Id": outcome.input_record["decision_id"]})


# ---- blobs ---------------------------------------------------------------------------------


@router.get(
    "/blobs/{blob_id}",
    name="proxy_blob",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}},
)
async def get_blob(
    blob_id: str,
    request: Request,
    gw: GatewayDep,
    expires: Annotated[str | None, Query(max_length=20)] = None,
    sig: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """A released image kept for a limited time: with a valid signed link (`expires` + `sig`, as
    returned in `url`) no key is needed; otherwise the key must belong to the tenant that made it."""
    state = gw.proxy
    tenant: str | None = None  # None: any tenant may read (signed link, or an operator key)
    if expires is not None and not (expires.isascii() and expires.isdigit()):
        raise BadInput("`expires` must be a Unix time in ASCII digits", code="bad_link")
    if sig is not None and not (sig.isascii() and all(c in "0123456789abcdef" for c in sig)):
        raise BadInput("`sig` must be lower-case hexadecimal", code="bad_link")
    if not BLOB_ID.fullmatch(blob_id):
        raise NotFound("no such image, or it has expired")
    if sig is not None or expires is not None:
        if not state.signer.valid(blob_id, expires, sig):
            raise Unauthorized("the link is invalid or has expired")
    else:
        principal = await run_in_threadpool(get_principal, request, gw)
        if not principal.is_operator(gw.settings.operator_tenant):
            tenant = principal.tenant
    blob = await run_in_threadpool(state.blobs.get, blob_id)
    if blob is None or (tenant is not None and blob.tenant != tenant):
        raise NotFound("no such image, or it has expired")
    return Response(blob.data, media_type=blob.mime)
