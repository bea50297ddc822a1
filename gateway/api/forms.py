"""Why: the multipart shape of /v1/check, /v1/release and /v1/jobs is HTTP: a JSON `request` part
and `media` file parts, each read with a hard cap so an enormous part costs at most the limit.
This module turns that shape into the pipeline's typed `CheckRequest` and bytes, with clear 4xx
errors for what does not parse. A part the endpoint does not read (`image=` instead of `media=`) and
an output check without media are refused (400), never decided on: a check that saw nothing must
not answer "allow" (issue #15.10)."""

from __future__ import annotations

import json

from fastapi import Request, UploadFile
from pydantic import ValidationError

from gateway.errors import BadInput, Invalid, TooLarge
from gateway.pipeline.request import CheckRequest

__all__ = ["parse_request_part", "read_capped", "read_parts", "refuse_unread_parts", "require_media"]

READ_PARTS = ("request", "media")


async def refuse_unread_parts(http: Request, reads: tuple[str, ...] = READ_PARTS) -> None:
    """400 `unknown_part` naming every multipart part this endpoint does not read: media sent under
    another name would otherwise be ignored and the check would decide without it."""
    form = await http.form()  # already parsed for the route's parameters: Starlette caches it
    unknown = sorted({name for name in form if name not in reads})
    if unknown:
        names = ", ".join(repr(n) for n in unknown[:10])
        raise BadInput(f"unknown multipart part(s) {names}: this endpoint reads only "
                       f"{' and '.join(f'`{r}`' for r in reads)} (send images, videos and audio as `media` parts)",
                       code="unknown_part")


def require_media(stage: str, count: int) -> None:
    """400 `media_required` for an output check (or release) without media: there is nothing to check."""
    if stage == "output" and count == 0:
        raise BadInput("an output check needs the render: send it as a `media` part (none was sent)",
                       code="media_required")


def parse_request_part(raw: str | bytes | None, *, default_stage: str | None = None,
                       require_stage: bool = False) -> CheckRequest:
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
    if require_stage and "stage" not in data:
        raise BadInput("`stage` is required in the `request` part: \"input\" (before the model: prompt and "
                       "reference media) or \"output\" (the render)", code="stage_required")
    if default_stage is not None:
        data.setdefault("stage", default_stage)
    try:
        return CheckRequest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise Invalid(f"invalid `request`: {problems}") from None


async def read_capped(upload: UploadFile, limit: int, index: int = 0) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"media part {index} is larger than the limit of {limit} bytes")
    return data


async def read_parts(uploads: list[UploadFile], limit: int) -> list[bytes]:
    return [await read_capped(u, limit, i) for i, u in enumerate(uploads)]
