"""Why: check, release, generate and jobs all make decisions the same way — decode safely, run
the pipeline under the tenant's policy, build the record, append it to the audit log *before*
anything is answered or released. This service is that shared path."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from gateway.apikeys import Principal
from gateway.context import Gateway
from gateway.errors import BadInput, Invalid, NotReady, TooLarge
from gateway.media import DecodedImage, decode_image
from gateway.pipeline.check import CheckInput, CheckResult
from gateway.pipeline.record import build_record
from gateway.policy.runtime import PolicyRuntime


class CheckRequestBody(BaseModel):
    """The `request` part of /v1/check, /v1/release and /v1/jobs."""

    model_config = ConfigDict(extra="forbid")

    stage: Literal["input", "output"] = "input"
    use: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    prompt: str | None = Field(default=None, max_length=20_000)
    end_user: str | None = Field(default=None, max_length=256)
    metadata: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    action: Literal["release", "check"] = "release"
    webhook_url: str | None = Field(default=None, max_length=2000)


def parse_request_part(raw: str | bytes | None, *, default_stage: str | None = None) -> CheckRequestBody:
    if raw is None or raw == "" or raw == b"":
        raise Invalid("the multipart part `request` (JSON) is required")
    if isinstance(raw, bytes):
        if len(raw) > 64_000:
            raise TooLarge("the `request` part is larger than 64 kB")
        raw = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:  # also too deep / too-long integers
        raise BadInput(f"the `request` part is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise Invalid("the `request` part must be a JSON object")
    if default_stage is not None:
        data.setdefault("stage", default_stage)
    try:
        return CheckRequestBody.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise Invalid(f"invalid `request`: {problems}") from None


@dataclass
class Decision:
    record: dict[str, Any]
    result: CheckResult
    runtime: PolicyRuntime
    images: list[DecodedImage]


class DecisionService:
    def __init__(self, gw: Gateway):
        self.gw = gw

    async def decode(self, parts: list[bytes]) -> list[DecodedImage]:
        if len(parts) > self.gw.settings.max_media_parts:
            raise TooLarge(f"{len(parts)} media parts; the limit is {self.gw.settings.max_media_parts}")
        limits = self.gw.limits
        return [await run_in_threadpool(decode_image, data, limits, index=i) for i, data in enumerate(parts)]

    def runtime_for(self, tenant: str) -> tuple[PolicyRuntime, str]:
        active = self.gw.policies.active
        if active is None:
            raise NotReady("no policy is loaded")
        return active.for_tenant(tenant), active.bundle.digest

    async def decide(
        self,
        principal: Principal,
        body: CheckRequestBody,
        images: list[DecodedImage],
        *,
        request_id: str | None = None,
    ) -> Decision:
        runtime, digest = self.runtime_for(principal.tenant)
        result = await self.gw.pipeline.run(
            runtime,
            CheckInput(body.stage, body.use, principal.tenant, body.end_user, body.prompt, images),
        )
        record = build_record(
            decision_id=secrets.token_hex(16),
            request_id=request_id or body.request_id or secrets.token_hex(16),
            facts=result.facts,
            verdict=result.verdict,
            policy=runtime.policy,
            policy_digest=digest,
            media=[img.describe() for img in images],
        )
        self.gw.metrics.decisions.labels(body.stage, body.use, result.verdict.decision).inc()
        return Decision(record, result, runtime, images)

    async def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append the record to the audit log; nothing may be answered if this fails (503)."""
        start = time.perf_counter()
        try:
            appended = await run_in_threadpool(self.gw.audit.append, record)
        except Exception as exc:  # noqa: BLE001 - the log is down: refuse, fail closed
            raise NotReady(f"the audit log could not record the decision ({type(exc).__name__}); "
                           "nothing was released") from None
        finally:
            self.gw.metrics.stage_seconds.labels("audit").observe(time.perf_counter() - start)
        record["audit"] = {
            "index": appended.index,
            "leaf_hash": appended.leaf_hash,
            "checkpoint": appended.checkpoint,
        }
        return record
