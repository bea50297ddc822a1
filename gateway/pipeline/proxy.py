"""Why: proxy mode is the whole pipeline around someone else's model, in a fixed order:

    rate limit → route slot → INPUT decision (prompt + reference images; audited)
      └ deny/review: 403, the upstream is never called
    → upstream call (retries only on connect errors and 502/503/504)
      └ failure: a deny record `upstream.failed` is audited, then 502
    → per returned image: OUTPUT decision → blur → watermark → C2PA sign → audit (release())
      └ every image withheld: 403 with the first denial; nothing leaves

Every decision carries the same `request_id`, so the input and output records of one request
can be joined in the audit log. The HTTP surfaces (gateway-native and OpenAI-compatible) only
translate requests and answers; they share this flow."""

from __future__ import annotations

import copy
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.apikeys import Principal
from gateway.context import Gateway, utc_now
from gateway.errors import BadInput, Invalid, NotFound, UpstreamError
from gateway.pipeline.record import rfc3339
from gateway.pipeline.release import release
from gateway.pipeline.service import CheckRequestBody, DecisionService
from gateway.upstream.clients import UpstreamCall, UpstreamFailure, call_upstream
from gateway.upstream.routes import Route
from gateway.upstream.state import ProxyState, attach_proxy


@dataclass(frozen=True)
class ProxyRequest:
    route: str | None
    prompt: str
    end_user: str | None = None
    n: int = 1
    size: str | None = None
    images: list[bytes] = field(default_factory=list)
    mask: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Released:
    data: bytes
    mime: str
    record: dict[str, Any]


@dataclass
class ProxyOutcome:
    request_id: str
    route_name: str
    route: Route
    input_record: dict[str, Any]
    released: list[Released]
    withheld: list[dict[str, Any]]


class ProxyDenied(Exception):
    """A decision said deny or review; `record` is the full (operator) record."""

    def __init__(self, record: dict[str, Any], request_id: str):
        super().__init__(record["decision"])
        self.record = record
        self.request_id = request_id


class UpstreamFailed(UpstreamError):
    """502 with the decision id of the audited `upstream.failed` record."""

    def __init__(self, message: str, record: dict[str, Any], request_id: str):
        super().__init__(message, details={"decision_id": record["decision_id"], "request_id": request_id})
        self.record = record
        self.request_id = request_id


def _stage_record(source: dict[str, Any], route: Route, rule: str, detail: str) -> dict[str, Any]:
    """A deny decision for the output stage when there is no render to check (the upstream
    failed or sent something that is not an image): same request, use, tenant and policy."""
    record = copy.deepcopy({k: v for k, v in source.items() if k != "audit"})
    record.update(
        decision_id=secrets.token_hex(16),
        decision="deny",
        stage="output",
        created_at=rfc3339(utc_now()),
        reasons=[{"rule": rule, "outcome": "deny", "detail": detail}],
        media=[],
        findings={"nsfw": [], "faces": [], "prompt": [], "hashes": [], "shadow": []},
        obligations=[],
        grant_ids=[],
        outputs=[],
        software_agent=route.software_agent(),
    )
    return record


def _upstream_fault(record: dict[str, Any]) -> bool:
    reasons = record.get("reasons") or []
    return bool(reasons) and all(str(r.get("rule", "")).startswith("upstream.") for r in reasons)


class ProxyService:
    def __init__(self, gw: Gateway, state: ProxyState | None = None):
        self.gw = gw
        self.state = state or attach_proxy(gw)
        self.decisions = DecisionService(gw)

    def resolve(self, name: str | None) -> tuple[str, Route]:
        found = self.state.routes.current().resolve(name)
        if found is None:
            if not name:
                raise Invalid(
                    "name a route (the `model` field): several routes exist and none is the default"
                )
            raise NotFound(f"no route named {name!r}; GET /v1/routes lists them", code="route_not_found")
        return found

    async def run(self, principal: Principal, req: ProxyRequest) -> ProxyOutcome:
        name, route = self.resolve(req.route)
        edit = bool(req.images)
        if edit and not route.takes_edits:
            raise BadInput(f"route {name!r} takes no reference images")
        if not 1 <= req.n <= route.max_n:
            raise Invalid(f"n must be between 1 and {route.max_n} on route {name!r}")
        await self.state.check_rate(principal.key_id)
        async with self.state.slots.hold(name, route):
            return await self._run(principal, req, name, route, edit)

    async def _run(
        self, principal: Principal, req: ProxyRequest, name: str, route: Route, edit: bool
    ) -> ProxyOutcome:
        request_id = secrets.token_hex(16)
        use = route.edit_use if edit else route.use
        body = CheckRequestBody(
            stage="input", use=use, prompt=req.prompt, end_user=req.end_user, request_id=request_id
        )
        media = req.images + ([req.mask] if req.mask is not None else [])
        images = await self.decisions.decode(media)
        decision = await self.decisions.decide(principal, body, images, request_id=request_id)
        input_record = await self.decisions.append(decision.record)
        if input_record["decision"] != "allow":
            raise ProxyDenied(input_record, request_id)

        renders = await self._call(name, route, req, input_record, request_id)
        out_body = body.model_copy(update={"stage": "output"})
        released: list[Released] = []
        withheld: list[dict[str, Any]] = []
        for data in renders:
            try:
                outcome = await release(
                    self.decisions,
                    principal,
                    out_body,
                    [data],
                    request_id=request_id,
                    software_agent=route.software_agent(),
                )
            except BadInput as exc:  # not a decodable image: the upstream's fault, recorded as such
                record = _stage_record(
                    input_record,
                    route,
                    "upstream.bad_output",
                    f"the upstream returned something that is not a usable image: {exc.message}",
                )
                withheld.append(await self.decisions.append(record))
                continue
            if outcome.record["decision"] == "allow" and outcome.files:
                data_out, mime = outcome.files[0]
                released.append(Released(data_out, mime, outcome.record))
            else:
                withheld.append(outcome.record)
        if not released:
            denial = next((r for r in withheld if not _upstream_fault(r)), None)
            if denial is not None:
                raise ProxyDenied(denial, request_id)
            raise UpstreamFailed(
                f"route {name!r}: the upstream returned no usable image", withheld[0], request_id
            )
        return ProxyOutcome(request_id, name, route, input_record, released, withheld)

    async def _call(
        self, name: str, route: Route, req: ProxyRequest, input_record: dict[str, Any], request_id: str
    ) -> list[bytes]:
        call = UpstreamCall(
            prompt=req.prompt,
            n=req.n,
            size=req.size,
            images=list(req.images),
            mask=req.mask,
            extra=dict(req.extra),
        )
        metrics = self.state.metrics
        start = time.perf_counter()
        try:
            renders = await call_upstream(
                self.state.http(), route, call, max_bytes=self.state.max_response_bytes
            )
        except UpstreamFailure as exc:
            metrics.upstream.labels(name, exc.reason).inc()
            record = await self.decisions.append(
                _stage_record(input_record, route, "upstream.failed", f"{exc.reason}: {exc.message}")
            )
            raise UpstreamFailed(f"route {name!r}: {exc.message}", record, request_id) from None
        finally:
            metrics.upstream_seconds.labels(name).observe(time.perf_counter() - start)
        metrics.upstream.labels(name, "ok").inc()
        return renders
