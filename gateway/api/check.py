"""Why: `/v1/check` is the check service generation backends call before and after their model:
multipart `request` JSON + media parts in, the decision record (in the caller's view) out —
200 whatever the verdict; nothing is marked or released."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from gateway.api.deps import GatewayDep, LimitedGenerator
from gateway.api.forms import parse_request_part, read_parts, refuse_unread_parts, require_media
from gateway.pipeline.record import caller_view

router = APIRouter(prefix="/v1", tags=["check"])


@router.post("/check")
async def check(
    gw: GatewayDep,
    principal: LimitedGenerator,
    http: Request,
    request: Annotated[str, Form(description="JSON: {stage (required), use, prompt?, end_user?, metadata?, "
                                                  "input_decision_id? (required on outputs of face_swap, img2img, "
                                                  "img2video, video2video, voice_clone)}")],
    media: Annotated[list[UploadFile] | None, File(description="images, or one small video; an output check "
                                                               "needs at least one")] = None,
) -> dict[str, Any]:
    await refuse_unread_parts(http)
    body = parse_request_part(request, require_stage=True)
    require_media(body.stage, len(media or []))
    parts = await read_parts(media or [], gw.settings.max_upload_bytes)
    record = await gw.pipeline.check(principal, body, parts)
    return caller_view(record.to_dict(), tenant=principal.tenant,
                       is_operator=principal.is_operator(gw.settings.operator_tenant))
