"""Why: proxy mode is the whole pipeline around someone else's model, in a fixed order:

    rate limit → route slot → INPUT decision (prompt + reference images; audited)
      └ deny/review: 403, the upstream is never called
    → upstream call (retries only on connect errors and 502/503/504)
      └ failure: a deny record `upstream.failed` is audited, then 502
    → per returned image: OUTPUT decision → blur → watermark → C2PA sign → audit (release())
      └ every image withheld: 403 with the first denial; nothing leaves

Every decision carries the same `request_id`, so the input and output records of one request
can be joined in the audit log; each output record also names the input's `input_decision_id` and
inherits the identities it found (issue #15.2: their grants are read again for the output).
The HTTP surfaces (gateway-native and OpenAI-compatible) only translate requests and answers;
they share this flow. The upstream clients, routes and per-gateway
proxy resources are `gateway.upstream`."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.apikeys import Principal
from gateway.decision import Reason
from gateway.errors import BadInput, Invalid, NotFound
from gateway.pipeline.errors import ProxyDenied, UpstreamFailed
from gateway.pipeline.inherit import binding_of
from gateway.pipeline.record import DecisionRecord, Findings, rfc3339
from gateway.pipeline.request import CheckRequest
from gateway.pipeline.service import Pipeline
from gateway.pipeline.steps import new_id
from gateway.upstream.clients import UpstreamCall, call_upstream
from gateway.upstream.errors import UpstreamFailure
from gateway.upstream.routes import Route
from gateway.upstream.state import ProxyState

__all__ = ["ProxyDenied", "ProxyOutcome", "ProxyRequest", "ProxyService", "Released", "UpstreamFailed"]


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


def _stage_record(source: DecisionRecord, route: Route, rule: str, detail: str, now: str) -> DecisionRecord:
    """A deny decision for the output stage when there is no render to check (the upstream
    failed or sent something that is not an image): same request, use, tenant and policy."""
    return dataclasses.replace(
        source,
        decision_id=new_id(), decision="deny", stage="output", created_at=now,
        reasons=[Reason(rule, "deny", detail)], media=[], findings=Findings(), obligations=[], grant_ids=[],
        outputs=[], software_agent=route.software_agent(), audit=None,
        video=list(source.video), policy=dataclasses.replace(source.policy),
    )


def _upstream_fault(record: DecisionRecord) -> bool:
    return bool(record.reasons) and all(r.rule.startswith("upstream.") for r in record.reasons)


class ProxyService:
    def __init__(self, pipeline: Pipeline, state: ProxyState):
        self.pipeline = pipeline
        self.state = state

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
        refused = sorted(set(req.extra) - set(route.pass_fields) - KIND_FIELDS.get(route.kind, set()))
        if refused:
            passes = ", ".join(route.pass_fields) or "none"
            raise BadInput(f"route {name!r} does not pass on the field(s) {', '.join(map(repr, refused[:10]))} "
                           f"(it passes: {passes})", code="field_not_passed")
        edit = bool(req.images)
        if edit and not route.takes_edits:
            raise BadInput(f"route {name!r} takes no reference images")
        if not 1 <= req.n <= route.max_n:
            raise Invalid(f"n must be between 1 and {route.max_n} on route {name!r}")
        await self.state.check_rate(principal.key_id)
        async with self.state.slots.hold(name, route):
            return await self._run(principal, req, name, route, edit)

    def _now(self) -> str:
        return rfc3339(self.pipeline.clock())

    async def _run(
        self, principal: Principal, req: ProxyRequest, name: str, route: Route, edit: bool
    ) -> ProxyOutcome:
        request_id = new_id()
        use = route.edit_use if edit else route.use
        text = checked_text(req, route)
        if text is not None and len(text) > 20_000:
            raise Invalid("the prompt and the text fields passed on are longer than 20,000 characters together")
        body = CheckRequest(stage="input", use=use, prompt=text, end_user=req.end_user, request_id=request_id)
        media = req.images + ([req.mask] if req.mask is not None else [])
        images = await self.pipeline.decode(media)
        decision = await self.pipeline.decide(principal, body, images, request_id=request_id)
        input_record = await self.pipeline.append(decision.record)
        if not input_record.allowed:
            raise ProxyDenied(input_record.to_dict(), request_id)

        renders = await self._call(name, route, req, input_record, request_id)
        # each output is bound to this request's input decision (issue #15.2): same use, and the
        # identities the input found need their grants again at output time
        binding = binding_of(input_record.to_dict())
        released: list[Released] = []
        withheld: list[DecisionRecord] = []
        for data in renders:
            try:
                outcome = await self.pipeline.release(principal, body, [data], request_id=request_id,
                                                      software_agent=route.software_agent(), allow_video=False,
                                                      binding=binding)
            except BadInput as exc:  # not a decodable image: the upstream's fault, recorded as such
                record = _stage_record(
                    input_record, route, "upstream.bad_output",
                    f"the upstream returned something that is not a usable image: {exc.message}", self._now(),
                )
                withheld.append(await self.pipeline.append(record))
                continue
            if outcome.record.allowed and outcome.files:
                released.append(Released(outcome.files[0].data, outcome.files[0].mime, outcome.record.to_dict()))
            else:
                withheld.append(outcome.record)
        if not released:
            denial = next((r for r in withheld if not _upstream_fault(r)), None)
            if denial is not None:
                raise ProxyDenied(denial.to_dict(), request_id)
            raise UpstreamFailed(
                f"route {name!r}: the upstream returned no usable image", withheld[0].to_dict(), request_id
            )
        return ProxyOutcome(request_id, name, route, input_record.to_dict(), released,
                            [r.to_dict() for r in withheld])

    async def _call(
        self, name: str, route: Route, req: ProxyRequest, input_record: DecisionRecord, request_id: str
    ) -> list[bytes]:
        call = UpstreamCall(
            prompt=req.prompt, n=req.n, size=req.size, images=list(req.images), mask=req.mask, extra=dict(req.extra),
        )
        metrics = self.state.metrics
        start = time.perf_counter()
        try:
            renders = await call_upstream(self.state.http(), route, call, max_bytes=self.state.max_response_bytes)
        except UpstreamFailure as exc:
            metrics.upstream.labels(name, exc.reason).inc()
            record = await self.pipeline.append(
                _stage_record(input_record, route, "upstream.failed", f"{exc.reason}: {exc.message}", self._now())
            )
            raise UpstreamFailed(f"route {name!r}: {exc.message}", record.to_dict(), request_id) from None
        finally:
            metrics.upstream_seconds.labels(name).observe(time.perf_counter() - start)
        metrics.upstream.labels(name, "ok").inc()
        return renders


# Fields a route kind's own surface sets (the OpenAI speech API's), always passed on; of those only
# `instructions` is free text for the model.
KIND_FIELDS: dict[str, set[str]] = {"openai-audio": {"voice", "response_format", "speed", "instructions"}}
_NOT_TEXT = {"voice", "response_format", "speed"}


def checked_text(req: ProxyRequest, route: Route) -> str | None:
    """The prompt and every string the client passes on (`negative_prompt`, `hr_prompt`, ...): all of
    it reaches the upstream as text, so all of it goes through the prompt rules and the name-consent
    check (issue #15.8). Operator `params` win over client fields, so those are not the client's."""
    texts = [req.prompt] if req.prompt else []
    texts += [v for k, v in sorted(req.extra.items())
              if isinstance(v, str) and k not in route.params and k not in _NOT_TEXT and v.strip()]
    return "\n".join(texts) or None
