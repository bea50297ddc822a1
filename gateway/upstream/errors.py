"""Why: proxy mode's failures are typed, so the flow (gateway.pipeline.proxy) records the right
reason and the CLI prints every problem of a routes file — without reading messages.

    UpstreamFailure (Exception)   the upstream gave no usable images; `reason`: connect | timeout |
                                  status | bad_response (the flow audits it and answers 502)
    RoutesError (PolicyError)     a routes file that cannot go live (`errors`: file:line messages)
    TemplateError (ValueError)    an `http-json` request template or response path that does not fit
"""

from __future__ import annotations

from gateway.policy.errors import PolicyError

__all__ = ["RoutesError", "TemplateError", "UpstreamFailure"]


class UpstreamFailure(Exception):
    """The upstream gave no usable images. `reason` is connect | timeout | status | bad_response."""

    def __init__(self, message: str, *, reason: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.status = status


class RoutesError(PolicyError):
    """A routes file that cannot go live; `errors` are `file:line: field.path: message` strings."""


class TemplateError(ValueError):
    pass
