"""Why: `/v1/release` is how a render leaves through the gateway: the output check, then on allow
the marked and signed file (same media type) with X-Decision-Id / X-Decision / X-Audit-Index;
on deny or review a 403 with the decision and no file."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from gateway.api.denials import denial_response
from gateway.api.deps import GatewayDep, LimitedGenerator
from gateway.api.forms import parse_request_part, read_parts, refuse_unread_parts, require_media
from gateway.errors import Invalid
from gateway.pipeline.record import caller_view

router = APIRouter(prefix="/v1", tags=["release"])


@router.post("/release", response_class=Response,
             responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {},
                                          "video/mp4": {}}},
                        403: {"description": "policy_denied or review_required, with the decision record"}})
async def release_endpoint(
    gw: GatewayDep,
    principal: LimitedGenerator,
    http: Request,
    request: Annotated[str, Form(description="JSON: {use, prompt?, end_user?, metadata?, input_decision_id? "
                                                  "(required for face_swap, img2img, img2video, video2video, "
                                                  "voice_clone)}")],
    media: Annotated[list[UploadFile] | None, File(description="exactly one render (an image, or a small video)")]
    = None,
) -> Response:
    await refuse_unread_parts(http)
    body = parse_request_part(request, default_stage="output")
    media = media or []
    require_media("output", len(media))
    if len(media) != 1:
        raise Invalid(f"/v1/release takes exactly one `media` part (got {len(media)})")
    parts = await read_parts(media, gw.settings.max_upload_bytes)
    released = await gw.pipeline.release(principal, body, parts)
    record = caller_view(released.record.to_dict(), tenant=principal.tenant,
                         is_operator=principal.is_operator(gw.settings.operator_tenant))
    if record["decision"] != "allow" or not released.files:
        return denial_response(record)
    file = released.files[0]
    return Response(file.data, media_type=file.mime, headers={
        "X-Decision-Id": record["decision_id"], "X-Decision": record["decision"],
        "X-Audit-Index": str(record["audit"]["index"]),
    })
