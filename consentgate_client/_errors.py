"""Why: callers branch on *what kind* of refusal they got, never on message text. Every non-2xx
answer becomes one of these, carrying the gateway's error code and body:

    ConsentgateError              any non-2xx answer: status, code, message, body, headers
    └── PolicyDenied              403 policy_denied / review_required, with the decision record
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["ConsentgateError", "PolicyDenied", "raise_for_answer"]


class ConsentgateError(Exception):
    """Any non-2xx answer: `status`, `code` (e.g. rate_limited, upstream_error), `message`, the body."""

    def __init__(
        self, status: int, code: str, message: str, body: Any = None, headers: httpx.Headers | None = None
    ):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.body = status, code, message, body
        self.headers = headers or httpx.Headers()

    @property
    def decision_id(self) -> str | None:
        err = self.body.get("error") if isinstance(self.body, dict) else None
        return err.get("decision_id") if isinstance(err, dict) else None

    @property
    def retry_after_s(self) -> float | None:
        raw = self.headers.get("retry-after")
        return float(raw) if raw and raw.replace(".", "", 1).isdigit() else None


class PolicyDenied(ConsentgateError):
    """403 policy_denied / review_required: `decision` is the record in the caller's view."""

    @property
    def decision(self) -> dict[str, Any] | None:
        return self.body.get("decision") if isinstance(self.body, dict) else None


def raise_for_answer(response: httpx.Response) -> None:
    """Raise the typed error for a non-2xx answer; return quietly on success."""
    if response.is_success:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = {"error": {"code": "http_error", "message": response.text[:500]}}
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    code = str(err.get("code") or "http_error")
    message = str(err.get("message") or response.reason_phrase)
    cls = (
        PolicyDenied
        if response.status_code == 403 and code in ("policy_denied", "review_required")
        else ConsentgateError
    )
    raise cls(response.status_code, code, message, body, response.headers)
