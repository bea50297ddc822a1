"""Why: the two proxy surfaces accept different request shapes and must answer errors in the
shape their clients parse. The gateway-native `/v1/generate/{route}` body and the OpenAI images
body are validated here (unknown scalar fields pass through to the upstream, reserved ones are
refused), and any gateway error can be rendered as an OpenAI error object — so the router only
reads HTTP and writes answers."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import BadInput, GatewayError, Invalid

SIZE = r"^(auto|\d{2,5}x\d{2,5})$"
# set by the gateway itself (or meaningless upstream): never taken from a caller's extra fields
RESERVED = frozenset({
    "model", "prompt", "n", "size", "response_format", "image", "images", "mask", "init_images", "batch_size",
    "user", "safety_identifier", "stream", "end_user", "request", "media",
})  # fmt: skip
MAX_EXTRA_FIELDS = 32


class GenerateBody(BaseModel):
    """`/v1/generate/{route}` JSON (or the `request` part of its multipart form). Unknown fields
    (scalars only, e.g. `negative_prompt`, `seed`, `quality`) are passed to the upstream."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, max_length=20_000)
    end_user: str | None = Field(default=None, max_length=256)
    n: int = Field(default=1, ge=1, le=16)
    size: str | None = Field(default=None, pattern=SIZE)
    response_format: Literal["b64_json", "url"] = "b64_json"


class OpenAIImagesBody(BaseModel):
    """The fields of the OpenAI images API the gateway reads; other scalars go to the upstream.
    `safety_identifier` (or the older `user`) is recorded as the decision's `end_user`."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, max_length=20_000)
    model: str | None = Field(default=None, max_length=200)
    n: int = Field(default=1, ge=1, le=16)
    size: str | None = Field(default=None, pattern=SIZE)
    response_format: Literal["b64_json", "url"] = "b64_json"
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)
    stream: bool | None = None

    @property
    def end_user(self) -> str | None:
        return self.safety_identifier or self.user


class OpenAISpeechBody(BaseModel):
    """OpenAI `POST /v1/audio/speech` (issue #18): `input` is checked as the prompt (rules and
    enrolled names); `voice`, `response_format`, `speed`, `instructions` go to the upstream."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(min_length=1, max_length=4096)
    model: str | None = Field(default=None, max_length=200)
    voice: str = Field(default="alloy", min_length=1, max_length=100)
    response_format: Literal["mp3", "wav", "flac", "opus", "aac", "pcm"] = "mp3"
    speed: float | None = Field(default=None, ge=0.25, le=4.0)
    instructions: str | None = Field(default=None, max_length=4096)
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)
    stream_format: Literal["audio"] | None = None

    @property
    def end_user(self) -> str | None:
        return self.safety_identifier or self.user


def parse_speech(data: Any) -> OpenAISpeechBody:
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object")
    try:
        body = OpenAISpeechBody.model_validate(data)
    except ValidationError as exc:
        raise Invalid(problems(exc)) from None
    if body.response_format == "pcm":
        raise Invalid("response_format pcm (raw samples, no container) cannot be marked and signed: "
                      "ask for wav, flac, mp3, opus or aac")
    return body


def _binary(description: str) -> dict[str, Any]:
    return {"type": "string", "format": "binary", "description": description}


def openapi_body(kind: str) -> dict[str, Any]:
    """The OpenAPI `requestBody` of a proxy endpoint (bodies are parsed by hand, so that errors
    take each surface's shape; this documents them). kind: generate | generations | edits."""
    if kind == "generate":
        multipart = {"type": "object", "required": ["request"], "properties": {
            "request": {"type": "string", "description": "JSON: the same object as the JSON body"},
            "media": {"type": "array", "items": _binary("a reference image")},
            "mask": _binary("optional mask")}}  # fmt: skip
        content = {
            "application/json": {"schema": GenerateBody.model_json_schema()},
            "multipart/form-data": {"schema": multipart},
        }
    elif kind == "generations":
        content = {"application/json": {"schema": OpenAIImagesBody.model_json_schema()}}
    else:
        schema = OpenAIImagesBody.model_json_schema()
        schema["properties"] = {
            **schema["properties"],
            "image": _binary("the image to edit (or image[] parts)"),
            "mask": _binary("optional mask"),
        }
        schema["required"] = [*schema.get("required", []), "image"]
        content = {"multipart/form-data": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}


def problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:10])


def extras(model: BaseModel) -> dict[str, Any]:
    """The caller's extra fields for the upstream: scalars only, no reserved names, at most 32."""
    extra = dict(model.model_extra or {})
    bad = [k for k, v in extra.items() if k in RESERVED or not isinstance(v, str | int | float | bool | None)]
    if bad:
        raise Invalid(
            f"fields the gateway does not pass on: {', '.join(sorted(bad))} "
            "(only scalars; reserved names are set by the gateway)"
        )
    if len(extra) > MAX_EXTRA_FIELDS:
        raise Invalid(f"at most {MAX_EXTRA_FIELDS} extra fields")
    return {k: v for k, v in extra.items() if v is not None}


def loads(raw: str | bytes | None) -> Any:
    try:
        return json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"the request is not valid JSON: {exc}") from None


def parse_generate(data: Any) -> GenerateBody:
    if not isinstance(data, dict):
        raise Invalid("the request must be a JSON object")
    try:
        return GenerateBody.model_validate(data)
    except ValidationError as exc:
        raise Invalid(f"invalid request: {problems(exc)}") from None


def parse_openai(data: Any) -> OpenAIImagesBody:
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object")
    try:
        body = OpenAIImagesBody.model_validate(data)
    except ValidationError as exc:
        raise Invalid(problems(exc)) from None
    if body.stream:
        raise Invalid("streaming is not supported: every image is checked whole before it is released")
    return body


OPENAI_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
    422: "invalid_request_error", 429: "rate_limit_error", 502: "upstream_error", 503: "server_error",
}  # fmt: skip


class OpenAIStyleError(GatewayError):
    """Any gateway error as an OpenAI error object: {"error": {message, type, code, param, ...}}."""

    def __init__(self, exc: GatewayError):
        super().__init__(exc.message, code=exc.code, details=exc.details)
        self.status = exc.status
        self.headers = exc.headers

    def body(self) -> dict[str, Any]:
        kind = OPENAI_TYPES.get(self.status, "server_error")
        return {
            "error": {"message": self.message, "type": kind, "code": self.code, "param": None, **self.details}
        }


def openai_denial(record: dict[str, Any], request_id: str) -> dict[str, Any]:
    """The 403 body for a deny or review on the OpenAI surface: code and type are
    `policy_denied` / `review_required`, with the decision id, request id and stage."""
    code = "policy_denied" if record["decision"] == "deny" else "review_required"
    first = next((r for r in record.get("reasons", []) if r.get("outcome") in ("deny", "review")), None)
    message = (
        f"{record['stage']} {record['decision']}: {first['rule']}" if first else f"the policy says {code}"
    )
    return {
        "error": {
            "message": message,
            "type": code,
            "code": code,
            "param": None,
            "decision_id": record["decision_id"],
            "request_id": request_id,
            "stage": record["stage"],
        }
    }
