"""Why: one exception tree that maps to the JSON error shape and status codes of the API, so a
failure anywhere becomes a clear 4xx/503 instead of a 500. The status is data on the class; the
app turns these (and the other packages' errors, through `gateway.api.errors`) into responses in
one place.

    GatewayError (500 internal)
    ├── BadInput (400 bad_input)
    │   ├── TooLarge (413 too_large)
    │   ├── UnsupportedMedia (415 unsupported_media)
    │   └── Invalid (422 invalid)
    ├── Unauthorized (401 unauthorized)
    ├── Forbidden (403 forbidden)
    ├── NotFound (404 not_found)
    ├── Conflict (409 conflict)
    ├── RateLimited (429 rate_limited)
    ├── NotReady (503 not_ready)
    └── UpstreamError (502 upstream_error)
"""

from __future__ import annotations

from typing import Any

__all__ = ["BadInput", "Conflict", "Forbidden", "GatewayError", "Invalid", "NotFound", "NotReady",
           "RateLimited", "TooLarge", "Unauthorized", "UnsupportedMedia", "UpstreamError"]


class GatewayError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}
        self.headers = headers  # extra response headers (e.g. Retry-After)

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        err.update(self.details)
        return {"error": err}


class BadInput(GatewayError):
    status = 400
    code = "bad_input"


class TooLarge(BadInput):
    status = 413
    code = "too_large"


class UnsupportedMedia(BadInput):
    status = 415
    code = "unsupported_media"


class Invalid(BadInput):
    status = 422
    code = "invalid"


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class Conflict(GatewayError):
    status = 409
    code = "conflict"


class RateLimited(GatewayError):
    status = 429
    code = "rate_limited"


class NotReady(GatewayError):
    status = 503
    code = "not_ready"


class UpstreamError(GatewayError):
    status = 502
    code = "upstream_error"
