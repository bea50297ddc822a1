"""Why: video — and long audio — is too slow for a request/response cycle. `POST /v1/jobs` takes
the same multipart as /v1/release (`request.action` = release (default) or check, optional
`request.webhook_url`) with one video or one audio file (WAV, FLAC, MP3, Ogg, M4A: issue #18),
checks the upload at once (type, size, duration, that it decodes: 400/413/415 now, not a failed
job later) and answers 202 with a job id; `GET /v1/jobs/{id}` reports state, stage and progress
and, when done, the decision (caller's view); `GET /v1/jobs/{id}/result` returns the marked,
signed file on allow (an MP4 for videos; audio in the type it came in, Ogg as FLAC), 403 with the
decision on deny/review, and 409 while the job is not done. Jobs are visible only to the tenant
that made them.

The router's lifespan starts the job workers once the gateway is up (and resumes or fails jobs
a previous run left behind) and stops them, handing running jobs back to the queue, on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from gateway.api.denials import denial_response
from gateway.api.deps import GatewayDep, Generator, LimitedGenerator
from gateway.api.forms import parse_request_part, refuse_unread_parts, require_media
from gateway.apikeys import require_use
from gateway.audio.intake import probe_audio, sniff_audio
from gateway.errors import Conflict, NotFound, TooLarge, UnsupportedMedia
from gateway.jobs.webhook import check_webhook_url
from gateway.pipeline.audio_job import AUDIO_SUFFIX, job_audio_limits
from gateway.pipeline.audio_release import RELEASE_TYPE
from gateway.pipeline.record import caller_view
from gateway.pipeline.video import probe
from gateway.video.intake import sniff_video

log = logging.getLogger("consentgate.jobs")


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    async def start_when_ready() -> None:
        while True:  # `serve` builds the gateway in the background: wait for it
            gw = getattr(app.state, "gateway", None)
            if gw is not None and gw.started:
                await asyncio.to_thread(gw.jobs.start)
                return
            if getattr(app.state, "start_error", None):
                return
            await asyncio.sleep(0.2)

    task = asyncio.create_task(start_when_ready())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        gw = getattr(app.state, "gateway", None)
        if gw is not None:
            await asyncio.to_thread(gw.jobs.stop)


router = APIRouter(prefix="/v1/jobs", tags=["jobs"], lifespan=_lifespan)


async def _spool(upload: UploadFile, dst: Path, limit: int) -> int:
    """Copy an upload to `dst` in chunks, refusing (413) past `limit` bytes."""
    size = 0
    with open(dst, "wb") as out:
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"the upload is larger than the limit of {limit} bytes for a job",
                               code="video_too_large")
            await run_in_threadpool(out.write, chunk)
    return size


@router.post("", status_code=202, responses={
    202: {"description": "queued: {job_id, state, status_url, result_url}"},
    400: {"description": "the video or audio does not decode"}, 413: {"description": "too large or too long"},
    415: {"description": "not an MP4, MOV or WebM video, nor a WAV, FLAC, MP3, Ogg or M4A audio file"}})
async def submit(
    gw: GatewayDep,
    principal: LimitedGenerator,
    http: Request,
    request: Annotated[str, Form(description="JSON: {use, action?: release|check, stage?, prompt?, "
                                             "end_user?, metadata?, webhook_url?, input_decision_id?}")],
    media: Annotated[list[UploadFile] | None, File(description="exactly one video (MP4, MOV or WebM) or audio "
                                                                "file (WAV, FLAC, MP3, Ogg, M4A)")] = None,
) -> JSONResponse:
    await refuse_unread_parts(http)
    body = parse_request_part(request, default_stage="output")
    require_use(principal, body.use)
    # an output bound to its input decision (INPUT_BOUND_USES: #15.2) is refused now, not as a failed
    # job later; the runner binds it again when the job runs
    await gw.pipeline.bind(principal, body.model_copy(update={"stage": "output" if body.action == "release"
                                                              else body.stage}))
    media = media or []
    require_media("output", len(media))
    service = gw.jobs
    check_webhook_url(body.webhook_url, service.config.webhook_hosts)
    if len(media) != 1:
        raise UnsupportedMedia(f"a job takes exactly one `media` part (got {len(media)})")
    runtime, _ = gw.pipeline.runtime_for(principal.tenant)
    settings = runtime.policy.video
    incoming = gw.settings.data_dir / "jobs" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    folder = Path(await run_in_threadpool(tempfile.mkdtemp, dir=incoming))
    try:
        upload = folder / "upload"
        await _spool(media[0], upload, settings.max_bytes)
        head = await run_in_threadpool(_head, upload)
        mime: str
        if sniff_audio(head) is not None:  # first: M4A is ISO-BMFF like MP4 video
            mime = (await run_in_threadpool(probe_audio, upload, job_audio_limits(settings))).mime
        elif sniff_video(head) is not None:
            mime = (await run_in_threadpool(probe, upload, settings)).mime
        else:
            raise UnsupportedMedia("jobs take videos (MP4, MOV or WebM) and audio (WAV, FLAC, MP3, Ogg, M4A); "
                                   "send images to /v1/check or /v1/release")
        job = await run_in_threadpool(service.submit, principal, body, upload, mime)
    finally:
        await run_in_threadpool(shutil.rmtree, folder, True)
    view = service.view(job, principal)
    content = {"job_id": job.id, "state": job.state, "status_url": f"/v1/jobs/{job.id}",
               "result_url": f"/v1/jobs/{job.id}/result", "job": view}
    return JSONResponse(content, status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


def _head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(1 << 16)  # an MP3's ID3 tag may be long; what follows it says whether it is FLAC


@router.get("/{job_id}")
async def status(job_id: str, gw: GatewayDep, principal: Generator) -> dict[str, Any]:
    service = gw.jobs
    job = await run_in_threadpool(service.get_for, principal, job_id)
    return service.view(job, principal)


@router.get("/{job_id}/result", response_class=Response, responses={
    200: {"content": {"video/mp4": {}, "audio/wav": {}, "audio/flac": {}, "audio/mpeg": {}, "audio/mp4": {},
                      "application/json": {}},
          "description": "release: the marked, signed MP4 (video) or audio file (in its own type; Ogg as "
                         "FLAC); check: the decision record"},
    403: {"description": "policy_denied or review_required, with the decision record"},
    409: {"description": "the job is not done (queued, running or failed)"}})
async def result(job_id: str, gw: GatewayDep, principal: Generator) -> Response:
    service = gw.jobs
    job = await run_in_threadpool(service.get_for, principal, job_id)
    if job.state == "failed":
        raise Conflict(f"job {job_id} failed: {job.error_message}", code="job_failed",
                       details={"state": job.state, "reason": job.error_code})
    if job.state != "done":
        raise Conflict(f"job {job_id} is {job.state} ({job.stage}, {job.progress:.0%}); "
                       f"poll GET /v1/jobs/{job_id}", code="job_not_done",
                       details={"state": job.state, "progress": round(job.progress, 4)})
    stored = job.decision_record()
    assert stored is not None
    record = caller_view(stored, tenant=principal.tenant,
                         is_operator=principal.is_operator(gw.settings.operator_tenant))
    if job.action == "check":
        return JSONResponse(record)
    if record["decision"] != "allow":
        return denial_response(record)
    size = await run_in_threadpool(service.files.size, job.result_key) if job.result_key else None
    chunks = await run_in_threadpool(service.files.stream, job.result_key) if job.result_key else None
    if chunks is None or size is None:
        raise NotFound(f"the result of job {job_id} is no longer stored", code="result_expired")
    media_type = RELEASE_TYPE.get(job.input_type or "", "video/mp4")
    suffix = AUDIO_SUFFIX.get(media_type, "mp4")
    headers = {"X-Decision-Id": record["decision_id"], "X-Decision": record["decision"],
               "X-Audit-Index": str(record["audit"]["index"]), "Content-Length": str(size),
               "Content-Disposition": f'attachment; filename="{job_id}.{suffix}"'}
    return StreamingResponse(chunks, media_type=media_type, headers=headers)
