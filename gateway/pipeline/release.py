"""Why: release is check + obligations + provenance + record, in a fixed order: output check →
blur → watermark → C2PA sign → audit entry (with output and manifest digests) → answer. Any
failure after an allow turns the decision into a deny that is still recorded, and nothing leaves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from gateway.apikeys import Principal
from gateway.decision import Reason
from gateway.pipeline.service import CheckRequestBody, Decision, DecisionService


@dataclass
class ReleaseOutcome:
    record: dict[str, Any]
    files: list[tuple[bytes, str]]


def _fail(decision: Decision, stage: str, exc: Exception) -> None:
    record = decision.record
    record["decision"] = "deny"
    record["obligations"] = []
    record["outputs"] = []
    record["reasons"].append(
        Reason(f"release.{stage}.failed", "deny", f"{stage} failed ({type(exc).__name__}: {exc}); nothing released")
        .as_dict()
    )


async def release(
    service: DecisionService,
    principal: Principal,
    body: CheckRequestBody,
    parts: list[bytes],
    *,
    request_id: str | None = None,
    software_agent: dict[str, Any] | None = None,
) -> ReleaseOutcome:
    images = await service.decode(parts)
    body = body.model_copy(update={"stage": "output"})
    decision = await service.decide(principal, body, images, request_id=request_id)
    files: list[tuple[bytes, str]] = []
    if decision.record["decision"] == "allow":
        provenance = service.gw.provenance
        obligations = decision.result.verdict.obligations
        try:
            for index, image in enumerate(images):
                released = await run_in_threadpool(
                    provenance.release_image, image.rgb, image.mime, media_index=index,
                    decision_id=decision.record["decision_id"], policy_digest=decision.record["policy"]["digest"],
                    grant_ids=decision.record["grant_ids"], obligations=obligations, software_agent=software_agent,
                )
                decision.record["outputs"].append(released.output)
                files.append((released.data, released.mime))
        except Exception as exc:  # noqa: BLE001 - any provenance failure withholds the render
            stage = "sign" if "sign" in str(exc).lower() or "c2pa" in str(exc).lower() else "watermark"
            _fail(decision, stage, exc)
            files = []
    if software_agent:
        decision.record["software_agent"] = software_agent
    record = await service.append(decision.record)
    return ReleaseOutcome(record, files if record["decision"] == "allow" else [])
