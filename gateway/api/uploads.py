"""Why: an upload is read with a hard cap, so an enormous part costs at most the limit."""

from __future__ import annotations

from fastapi import UploadFile

from gateway.errors import TooLarge


async def read_capped(upload: UploadFile, limit: int, index: int = 0) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"media part {index} is larger than the limit of {limit} bytes")
    return data


async def read_parts(uploads: list[UploadFile], limit: int) -> list[bytes]:
    return [await read_capped(u, limit, i) for i, u in enumerate(uploads)]
