"""Why: anyone holding a file must be able to take it back to the decision that released it —
through its C2PA manifest, or through the watermark when the metadata was stripped — and see
whether the consent it relied on still holds (views per ARCHITECTURE.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import AnyKey, GatewayDep
from gateway.api.forms import read_capped
from gateway.audio.intake import sniff_audio
from gateway.errors import UnsupportedMedia
from gateway.media import IMAGE_TYPES, decode_image, sniff
from gateway.provenance.verify import verify_file

router = APIRouter(prefix="/v1/provenance", tags=["provenance"])


@router.post("/verify")
async def verify(
    gw: GatewayDep,
    principal: AnyKey,
    media: Annotated[UploadFile, File(description="the file to verify")],
) -> dict[str, Any]:
    data = await read_capped(media, gw.settings.max_upload_bytes)
    mime = sniff_audio(data) or sniff(data)  # audio first: M4A is ISO-BMFF like MP4
    if mime is None:
        raise UnsupportedMedia("not a recognised image, video or audio file")
    image = await run_in_threadpool(decode_image, data, gw.limits) if mime in IMAGE_TYPES else None
    return await run_in_threadpool(
        verify_file, gw.provenance, gw.audit, gw.registry, gw.pipeline.clock,
        operator_tenant=gw.settings.operator_tenant, principal=principal, data=data, mime=mime,
        rgb=image.rgb if image is not None else None)
