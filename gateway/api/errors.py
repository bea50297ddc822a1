"""Why: every package keeps its own errors (`gateway.<package>.errors`) and knows nothing of HTTP;
this module is the one place that says which status and code each becomes. The app installs one
handler per family (`install_error_handlers`), so a router never translates errors by hand and a
failure anywhere is a clear 4xx/5xx JSON body `{"error": {code, message, ...}}`, never a bare 500.

    gateway.errors.GatewayError        its own status and code (the API's vocabulary)
    gateway.registry.errors.*          EnrolmentError/InvalidRequest 422 · NotFound 404 · AccessDenied 401 ·
                                       RegistryUnavailable/UnknownFaceModel 503 registry_unavailable
    gateway.video.errors.VideoError    its status (413 / 415 / 400) and stable code
    anything else                      500 internal ("nothing was released"), logged
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.errors import (
    BadInput,
    GatewayError,
    Invalid,
    NotFound,
    NotReady,
    TooLarge,
    Unauthorized,
    UnsupportedMedia,
)
from gateway.registry import errors as registry_errors
from gateway.video.errors import VideoError

__all__ = ["as_gateway_error", "install_error_handlers"]

log = logging.getLogger("consentgate")


def as_gateway_error(exc: Exception) -> GatewayError:
    """The API error an exception of any package becomes."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, VideoError):
        kind = {413: TooLarge, 415: UnsupportedMedia}.get(exc.status, BadInput)
        return kind(exc.message, code=exc.code)
    if isinstance(exc, registry_errors.EnrolmentError):
        details: dict[str, Any] = {"reason": exc.code}
        if exc.image_index is not None:
            details["media_index"] = exc.image_index
        return Invalid(str(exc), details=details)
    if isinstance(exc, registry_errors.InvalidRequest):
        return Invalid(str(exc))
    if isinstance(exc, registry_errors.AccessDenied):
        return Unauthorized(str(exc))
    if isinstance(exc, registry_errors.NotFound):
        return NotFound(str(exc))
    if isinstance(exc, registry_errors.RegistryUnavailable | registry_errors.UnknownFaceModel):
        return NotReady(str(exc), code="registry_unavailable")
    if isinstance(exc, registry_errors.RegistryError):
        return GatewayError("consent registry error")
    return GatewayError("internal error; nothing was released")


def _json(exc: GatewayError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return _json(exc)

    @app.exception_handler(VideoError)
    async def video_error(_: Request, exc: VideoError) -> JSONResponse:
        return _json(as_gateway_error(exc))

    @app.exception_handler(registry_errors.RegistryError)
    async def registry_error(_: Request, exc: registry_errors.RegistryError) -> JSONResponse:
        return _json(as_gateway_error(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()[:10]
        )
        return JSONResponse({"error": {"code": "invalid", "message": problems or "invalid request"}},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse({"error": {"code": "internal", "message": "internal error; nothing was released"}},
                            status_code=500)
