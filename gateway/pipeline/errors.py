"""Why: a stage that fails must say which stage, by type — never by matching message text — so the
decision fails closed with a reason naming it. The HTTP status of the ones that reach a caller is
data on the `gateway.errors` classes they extend; the app maps those in one place.

    ModelCallFailed (Exception)   one model or registry call failed or timed out; carries the
                                  `ModelFailure` fact (the check goes on; the decision fails closed)
    ProxyDenied (Exception)       a proxied request's input, or every output, was denied or sent to review
    AuditUnavailable (NotReady)   503: the audit log could not record the decision; nothing was released
    UpstreamFailed (UpstreamError) 502: the upstream gave no usable image; the failure was audited

Release stages raise `gateway.provenance.errors.WatermarkError` / `SigningError` (see
`RELEASE_STAGES`); a video refused at intake raises `gateway.video.errors.VideoError`.
"""

from __future__ import annotations

from typing import Any

from gateway.decision import ModelFailure
from gateway.errors import NotReady, UpstreamError
from gateway.provenance.errors import ProvenanceError, SigningError, WatermarkError

__all__ = ["RELEASE_STAGES", "AuditUnavailable", "ModelCallFailed", "ProxyDenied", "UpstreamFailed",
           "release_stage"]

RELEASE_STAGES: tuple[tuple[type[ProvenanceError], str], ...] = ((SigningError, "sign"), (WatermarkError, "watermark"))


def release_stage(exc: ProvenanceError) -> str:
    """The release stage a provenance error belongs to (`release.<stage>.failed` in the record)."""
    for kind, stage in RELEASE_STAGES:
        if isinstance(exc, kind):
            return stage
    return "watermark"


class ModelCallFailed(Exception):
    def __init__(self, failure: ModelFailure):
        super().__init__(failure.message)
        self.failure = failure


class AuditUnavailable(NotReady):
    """The decision could not be recorded, so nothing may be answered or released."""


class ProxyDenied(Exception):
    """A decision said deny or review; `record` is the full (operator-view) serialised record."""

    def __init__(self, record: dict[str, Any], request_id: str):
        super().__init__(record["decision"])
        self.record = record
        self.request_id = request_id


class UpstreamFailed(UpstreamError):
    """502 with the decision id of the audited `upstream.failed` record."""

    def __init__(self, message: str, record: dict[str, Any], request_id: str):
        super().__init__(message, details={"decision_id": record["decision_id"], "request_id": request_id})
        self.record = record
        self.request_id = request_id
