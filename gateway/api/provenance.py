"""Why: anyone holding a file must be able to take it back to the decision that released it —
through its C2PA manifest, or through the watermark when the metadata was stripped — and see
whether the consent it relied on still holds (views per ARCHITECTURE.md).

Verify is as cheap to refuse as a check (issue #15.9): the file goes through exactly the intake of
`/v1/check` (`Pipeline.admit`: bytes, pixels and the decompression-bomb guard for images, JPEG/PNG/WebP
only; the audio decoder's limits; the policy's synchronous video limits and codec allowlist → 413 / 415
/ 400), and the verification runs under the check's time budget (`CONSENTGATE_CHECK_DEADLINE_S`; over
it: 503 `deadline_exceeded`)."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile

from gateway.api.deps import AnyKey, GatewayDep
from gateway.api.forms import read_capped
from gateway.provenance.verify import verify_file

router = APIRouter(prefix="/v1/provenance", tags=["provenance"])


@router.post("/verify", responses={
    400: {"description": "corrupt or undecodable file"}, 413: {"description": "over the check's intake limits"},
    415: {"description": "not a JPEG, PNG or WebP image, an accepted video or an audio file"},
    503: {"description": "deadline_exceeded: the verification took longer than the check's time budget"}})
async def verify(
    gw: GatewayDep,
    principal: AnyKey,
    media: Annotated[UploadFile, File(description="the file to verify")],
) -> dict[str, Any]:
    data = await read_capped(media, gw.settings.max_upload_bytes)
    admitted = await gw.pipeline.admit(principal, data, "/v1/provenance/verify")
    return await gw.pipeline.within_budget(functools.partial(
        verify_file, gw.provenance, gw.audit, gw.registry, gw.pipeline.clock,
        operator_tenant=gw.settings.operator_tenant, principal=principal, data=data, mime=admitted.mime,
        rgb=admitted.image.rgb if admitted.image is not None else None), "the verification")
