"""Why: proxy mode's HTTP surfaces. `/v1/generate/{route}` is the gateway's own shape (every
decision id in the answer); `/v1/images/generations` and `/v1/images/edits` speak the OpenAI
images API, so an existing client only changes its base URL (the route is the `model` field),
and denials come back as OpenAI-style error objects carrying the decision id. `/v1/blobs/{id}`
serves `url` answers; `/v1/routes` lists the routes. The flow itself is gateway.upstream.proxy."""

from __future__ import annotations

import base64
import json
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from gateway.api.denials import denial_response
from gateway.api.deps import AnyKey, GatewayDep, Generator, get_gateway, get_principal
from gateway.apikeys import Principal, require_role
from gateway.context import Gateway
from gateway.errors import BadInput, GatewayError, Invalid, NotFound, TooLarge, Unauthorized, UnsupportedMedia
from gateway.pipeline.record import caller_view
from gateway.upstream.proxy import ProxyDenied, ProxyOutcome, ProxyRequest, ProxyService, Released
from gateway.upstream.state import attach_proxy

router = APIRouter(prefix="/v1", tags=["proxy"])

SIZE = r"^(auto|\d{2,5}x\d{2,5})$"
RESERVED = frozenset(
    {
        "model",
        "prompt",
        "n",
        "size",
        "response_format",
        "image",
        "images",
        "mask",
        "init_images",
        "batch_size",
        "user",
        "safety_identifier",
        "stream",
        "end_user",
        "request",
        "media",
    }
)


class GenerateBody(BaseModel):
    """`/v1/generate/{route}` JSON (or the `request` part of its multipart form). Unknown fields
    (scalars only, e.g. `negative_prompt`, `seed`, `quality`) are passed to the upstream."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, max_length=20_000)
    end_user: str | None = Field(default=None, max_length=256)
    n: int = Field(default=1, ge=1, le=16)
    size: str | None = Field(default=None, pattern=SIZE)
    response_format: Literal["b64_json", "url"] = "b64_json"


class OpenAIImagesBody(BaseModel):
    """The fields of the OpenAI images API the gateway reads; other scalars go to the upstream."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, max_length=32_000)
    model: str | None = Field(default=None, max_length=200)
    n: int = Field(default=1, ge=1, le=16)
    size: str | None = Field(default=None, pattern=SIZE)
    response_format: Literal["b64_json", "url"] = "b64_json"
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)
    stream: bool | None = None


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:10])


def _extras(model: BaseModel) -> dict[str, Any]:
    extra = dict(model.model_extra or {})
    bad = [k for k, v in extra.items() if k in RESERVED or not isinstance(v, str | int | float | bool | None)]
    if bad:
        raise Invalid(
            f"fields the gateway does not pass on: {', '.join(sorted(bad))} (only scalars; "
            "reserved names are set by the gateway)"
        )
    if len(extra) > 32:
        raise Invalid("at most 32 extra fields")
    return {k: v for k, v in extra.items() if v is not None}


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"the body is not valid JSON: {exc}") from None


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


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


def _image_item(gw: Gateway, request: Request, released: Released, tenant: str, fmt: str) -> dict[str, Any]:
    if fmt == "url":
        state = attach_proxy(gw)
        blob = state.blobs.put(released.data, mime=released.mime, tenant=tenant, ttl_s=state.blob_ttl_s)
        state.maybe_purge()
        base = gw.settings.extra.get("public_url") or str(request.base_url)
        url = f"{base.rstrip('/')}/v1/blobs/{blob.id}?{state.signer.signed_query(blob)}"
        return {"url": url, "expires_at": int(blob.expires_at)}
    return {"b64_json": base64.b64encode(released.data).decode("ascii")}


async def _items(
    gw: Gateway, request: Request, outcome: ProxyOutcome, tenant: str, fmt: str
) -> list[dict[str, Any]]:
    items = []
    for released in outcome.released:
        item = await run_in_threadpool(_image_item, gw, request, released, tenant, fmt)
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
    """The routes of `policies/routes.yaml` (the upstream URL and reload errors: operator keys only)."""
    state = attach_proxy(gw)
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
    if _is_multipart(request):
        form = await _form(request, gw)
        raw = form.get("request")
        if not isinstance(raw, str):
            raise Invalid("the multipart part `request` (JSON) is required")
        data = json.loads(raw) if raw.strip().startswith("{") else None
        for i, part in enumerate(form.getlist("media")):
            if not isinstance(part, UploadFile):
                raise Invalid("`media` parts must be files")
            images.append(await _read(part, limit, f"media part {i}"))
        mask_part = form.get("mask")
        if isinstance(mask_part, UploadFile):
            mask = await _read(mask_part, limit, "the mask")
    elif request.headers.get("content-type", "").lower().startswith("application/json"):
        data = await _json_body(request)
    else:
        raise UnsupportedMedia(
            "send application/json, or multipart/form-data with `request` and `media` parts"
        )
    if not isinstance(data, dict):
        raise Invalid("the request must be a JSON object")
    try:
        body = GenerateBody.model_validate(data)
    except ValidationError as exc:
        raise Invalid(f"invalid request: {_problems(exc)}") from None
    return ProxyRequest(
        route=route,
        prompt=body.prompt,
        end_user=body.end_user,
        n=body.n,
        size=body.size,
        images=images,
        mask=mask,
        extra=_extras(body),
    ), body.response_format


@router.post(
    "/generate/{route}",
    responses={
        403: {"description": "policy_denied or review_required (input or output), with the decision record"},
        429: {"description": "rate_limited or route_busy, with Retry-After"},
        502: {"description": "upstream_error, with the decision id of the audited failure"},
    },
)
async def generate(route: str, request: Request, gw: GatewayDep, principal: Generator) -> Any:
    """Input check → upstream → output check → watermark + sign → audit. JSON
    `{prompt, end_user?, n?, size?, response_format?, ...}`, or multipart with a `request` JSON part,
    `media` reference images and an optional `mask`."""
    req, fmt = await _native_request(request, gw, route)
    operator = principal.is_operator(gw.settings.operator_tenant)
    try:
        outcome = await ProxyService(gw).run(principal, req)
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

OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "server_error",
}


class OpenAIStyleError(GatewayError):
    """Any gateway error, rendered as an OpenAI error object: {"error": {message, type, code, param}}."""

    def __init__(self, exc: GatewayError):
        super().__init__(exc.message, code=exc.code, details=exc.details)
        self.status = exc.status
        self.headers = getattr(exc, "headers", None)

    def body(self) -> dict[str, Any]:
        err = {
            "message": self.message,
            "type": OPENAI_TYPES.get(self.status, "server_error"),
            "code": self.code,
            "param": None,
            **self.details,
        }
        return {"error": err}


def openai_generator(request: Request) -> tuple[Gateway, Principal]:
    try:
        gw = get_gateway(request)
        principal = get_principal(request, gw)
        require_role(principal, "generator")
    except GatewayError as exc:
        raise OpenAIStyleError(exc) from None
    return gw, principal


OpenAICaller = Annotated[tuple[Gateway, Principal], Depends(openai_generator)]


def _openai_denial(denied: ProxyDenied) -> JSONResponse:
    record = denied.record
    code = "policy_denied" if record["decision"] == "deny" else "review_required"
    first = next((r for r in record.get("reasons", []) if r.get("outcome") in ("deny", "review")), None)
    message = (
        f"{record['stage']} {record['decision']}: {first['rule']}" if first else f"the policy says {code}"
    )
    return JSONResponse(
        {
            "error": {
                "message": message,
                "type": code,
                "code": code,
                "param": None,
                "decision_id": record["decision_id"],
                "request_id": denied.request_id,
                "stage": record["stage"],
            }
        },
        status_code=403,
        headers={
            "X-Decision-Id": record["decision_id"],
            "X-Decision": record["decision"],
            "X-Request-Id": denied.request_id,
        },
    )


async def _openai_answer(
    gw: Gateway, principal: Principal, request: Request, req: ProxyRequest, fmt: str
) -> Response:
    try:
        outcome = await ProxyService(gw).run(principal, req)
        items = await _items(gw, request, outcome, principal.tenant, fmt)
    except ProxyDenied as denied:
        return _openai_denial(denied)
    except GatewayError as exc:
        raise OpenAIStyleError(exc) from None
    data = [{k: v for k, v in item.items() if k in ("b64_json", "url")} for item in items]
    return JSONResponse(
        {
            "created": int(time.time()),
            "data": data,
            "consentgate": {
                "request_id": outcome.request_id,
                "route": outcome.route_name,
                "input_decision_id": outcome.input_record["decision_id"],
                "images": [{k: v for k, v in item.items() if k not in ("b64_json", "url")} for item in items],
                "withheld": _withheld(outcome),
            },
        },
        headers={"X-Request-Id": outcome.request_id},
    )


def _openai_body(data: Any) -> OpenAIImagesBody:
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object")
    try:
        body = OpenAIImagesBody.model_validate(data)
    except ValidationError as exc:
        raise Invalid(_problems(exc)) from None
    if body.stream:
        raise Invalid("streaming is not supported: every image is checked whole before it is released")
    return body


@router.post("/images/generations")
async def openai_generations(request: Request, caller: OpenAICaller) -> Response:
    """OpenAI-compatible image generation; the route is the `model` field."""
    gw, principal = caller
    try:
        body = _openai_body(await _json_body(request))
        req = ProxyRequest(
            route=body.model,
            prompt=body.prompt,
            end_user=body.safety_identifier or body.user,
            n=body.n,
            size=body.size,
            extra=_extras(body),
        )
    except GatewayError as exc:
        raise OpenAIStyleError(exc) from None
    return await _openai_answer(gw, principal, request, req, body.response_format)


@router.post("/images/edits")
async def openai_edits(request: Request, caller: OpenAICaller) -> Response:
    """OpenAI-compatible image edit (multipart `image` / `image[]`, optional `mask`); the
    reference images are checked (use: the route's `edit_use`) before the upstream sees them."""
    gw, principal = caller
    limit = gw.settings.max_upload_bytes
    try:
        if not _is_multipart(request):
            raise UnsupportedMedia("image edits take multipart/form-data")
        form = await _form(request, gw)
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        body = _openai_body(fields)
        images = [
            await _read(part, limit, f"image {i}")
            for i, part in enumerate(
                p for key in ("image", "image[]") for p in form.getlist(key) if isinstance(p, UploadFile)
            )
        ]
        if not images:
            raise Invalid("an edit needs at least one `image` file")
        mask_part = form.get("mask")
        mask = await _read(mask_part, limit, "the mask") if isinstance(mask_part, UploadFile) else None
        req = ProxyRequest(
            route=body.model,
            prompt=body.prompt,
            end_user=body.safety_identifier or body.user,
            n=body.n,
            size=body.size,
            images=images,
            mask=mask,
            extra=_extras(body),
        )
    except GatewayError as exc:
        raise OpenAIStyleError(exc) from None
    return await _openai_answer(gw, principal, request, req, body.response_format)


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
    state = attach_proxy(gw)
    if sig is not None or expires is not None:
        if not state.signer.valid(blob_id, expires, sig):
            raise Unauthorized("the link is invalid or has expired")
        tenant_ok = True
    else:
        principal = await run_in_threadpool(get_principal, request, gw)
        tenant_ok = False
        operator = principal.is_operator(gw.settings.operator_tenant)
    blob = await run_in_threadpool(state.blobs.get, blob_id)
    if blob is None or not (tenant_ok or operator or blob.tenant == principal.tenant):
        raise NotFound("no such image, or it has expired")
    return Response(blob.data, media_type=blob.mime)


__all__ = ["router", "AnyKey"]
