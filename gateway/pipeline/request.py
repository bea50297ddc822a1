"""Why: check, release, jobs and the proxy all ask the same question — "decide on this media, at
this stage, for this use" — so the question has one typed shape. The HTTP routers parse it from
the multipart `request` part (`gateway.api.forms.parse_request_part`); jobs store it as JSON and
read it back; the proxy builds it from a route."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CheckRequest"]


class CheckRequest(BaseModel):
    """The `request` part of /v1/check, /v1/release and /v1/jobs."""

    model_config = ConfigDict(extra="forbid")

    stage: Literal["input", "output"] = "input"
    use: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    prompt: str | None = Field(default=None, max_length=20_000)
    end_user: str | None = Field(default=None, max_length=256)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # an output of a use bound to its input (face_swap, img2img, ...) names the input check's decision (#15.2)
    input_decision_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    request_id: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    action: Literal["release", "check"] = "release"
    webhook_url: str | None = Field(default=None, max_length=2000)
