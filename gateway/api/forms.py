"""Why: the multipart shape of /v1/check, /v1/release and /v1/jobs is HTTP: a JSON `request` part
and `media` file parts, each read with a hard cap so an enormous part costs at most the limit.
This module turns that shape into the pipeline's typed `CheckRequest` and bytes, with clear 4xx
errors for what does not parse."""

from __future__ import annotations

import json

from fastapi import UploadFile
from pydantic import ValidationError

from gateway.errors import BadInput, Invalid, TooLarge
from gateway.pipeline.request import CheckRequest

__all__ = ["parse_request_part", "read_capped", "read_parts"]


def parse_request_part(raw: str | bytes | None, *, default_stage: str | None = None) -> CheckRequest:
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
