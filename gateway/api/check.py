"""Why: `/v1/check` is the check service generation backends call before and after their model:
multipart `request` JSON + media parts in, the decision record (in the caller's view) out —
200 whatever the verdict; nothing is marked or released."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from gateway.api.deps import GatewayDep, LimitedGenerator
from gateway.api.uploads import read_parts
from gateway.errors import Invalid
from gateway.pipeline.record import caller_view
from gateway.pipeline.service import DecisionService, parse_request_part
from gateway.pipeline.video import is_video, run_upload

router = APIRouter(prefix="/v1", tags=["check"])


@router.post("/check")
async def check(
    gw: GatewayDep,
    principal: LimitedGenerator,
    request: Annotated[str, Form(description="JSON: {stage, use, prompt?, end_user?, metadata?}")],
    media: Annotated[list[UploadFile] | None, File(description="images, or one small video")] = None,
) -> dict[str, Any]:
    body = parse_request_part(request)
    parts = await read_parts(media or [], gw.settings.max_upload_bytes)
    is_operator = principal.is_operator(gw.settings.operator_tenant)
    if any(is_video(part) for part in parts):  # small videos are checked here; larger ones: /v1/jobs
        if len(parts) != 1:
            raise Invalid(f"a video is checked on its own: send exactly one `media` part (got {len(parts)})")
        video_record, _ = await run_upload(gw, principal, body, parts[0], "check")
        return caller_view(video_record, tenant=principal.tenant, is_operator=is_operator)
    service = DecisionService(gw)
    images = await service.decode(parts)
    decision = await service.decide(principal, body, images)
    record = await service.append(decision.record)
    return caller_view(record, tenant=principal.tenant, is_operator=is_operator)
