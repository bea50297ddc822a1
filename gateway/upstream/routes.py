"""Why: `policies/routes.yaml` tells the gateway which upstream model serves which route, under
which `use` its requests are checked, and what to record as the C2PA softwareAgent. Admins edit
it like a policy, so it has a typed schema (unknown keys refused) and errors that name
`file:line: field.path` before anything goes live."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.policy.errors import PolicyError
from gateway.policy.parse import read_yaml, validation_errors
from gateway.upstream.errors import RoutesError

ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
USE_PATTERN = r"^[A-Za-z0-9_.-]+$"
Kind = Literal["openai-images", "http-json", "automatic1111", "openai-audio"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelInfo(Strict):
    """What the upstream is; recorded as the C2PA softwareAgent of every image it renders."""

    name: str = Field(min_length=1, max_length=200)
    version: str | None = Field(default=None, max_length=100)


class HttpJsonSpec(Strict):
    """A generic JSON API: POST `request` (a template) to `path`, read images at `response_path`.

    Template strings may hold `{prompt}`, `{n}`, `{size}`, `{width}`, `{height}`, `{image}`
    (base64 of the first reference image), `{images}`, `{mask}` and any extra request field;
    a string that is exactly one placeholder takes the value's own JSON type.
    `response_path` is dotted (`data.*.b64`, `images`, `output.0`); `*` walks every list item.
    """

    path: str = Field(default="/", pattern=r"^/")
    edit_path: str | None = Field(
        default=None, pattern=r"^/", description="Where edits (reference images) go; none: no edits."
    )
    request: dict[str, Any] = Field(default_factory=lambda: {"prompt": "{prompt}", "n": "{n}"})
    edit_request: dict[str, Any] | None = None
    response_path: str = Field(min_length=1)
    response_encoding: Literal["base64", "url"] = "base64"
    headers: dict[str, str] = Field(default_factory=dict)


class Route(Strict):
    kind: Kind
    url: str = Field(description="The upstream's base URL (http or https).")
    use: str = Field(pattern=USE_PATTERN, description="The use generations are checked under.")
    edit_use: str = Field(
        default="img2img",
        pattern=USE_PATTERN,
        description="The use requests with reference images are checked under.",
    )
    model: ModelInfo
    timeout_s: float = Field(default=60.0, gt=0, le=900)
    upstream_model: str | None = Field(
        default=None,
        max_length=200,
        description="`model` sent to an openai-images upstream (default: model.name).",
    )
    send_response_format: bool = Field(
        default=True, description="openai-images: send response_format=b64_json."
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^CONSENTGATE_UPSTREAM_[A-Z0-9_]+$",
        description="Environment variable holding the upstream's bearer token. Must start with "
        "CONSENTGATE_UPSTREAM_ so a policy edit cannot send another secret (e.g. the database URL) "
        "to an upstream of its choosing.",
    )
    retries: int = Field(default=2, ge=0, le=5, description="Retries on connect errors and 502/503/504 only.")
    max_concurrency: int = Field(default=4, ge=1, le=1024)
    queue_timeout_s: float = Field(
        default=2.0, ge=0, le=60, description="How long a request waits for a free slot before 429."
    )
    max_n: int = Field(default=4, ge=1, le=16)
    params: dict[str, Any] = Field(
        default_factory=dict, description="Fixed fields added to every upstream request; they win over any "
        "field a client sends."
    )
    pass_fields: list[str] = Field(
        default_factory=list, max_length=32,
        description="Client fields (beyond prompt, n, size and images) passed on to the upstream, e.g. "
        "[negative_prompt, seed]. Any other field is refused (400 naming it). String values are checked "
        "with the prompt (prompt rules and enrolled names) before the upstream sees them.",
    )
    http_json: HttpJsonSpec | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("the base URL takes no query or fragment")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _kind_fields(self) -> Route:
        if self.kind == "http-json" and self.http_json is None:
            raise ValueError("kind http-json needs an `http_json` section (path, request, response_path)")
        if self.kind != "http-json" and self.http_json is not None:
            raise ValueError(f"`http_json` only applies to kind http-json, not {self.kind}")
        return self

    @property
    def takes_edits(self) -> bool:
        if self.kind == "openai-audio":  # speech from text: no reference images
            return False
        return self.kind != "http-json" or (
            self.http_json is not None and self.http_json.edit_path is not None
        )

    def software_agent(self) -> dict[str, Any]:
        return {"name": self.model.name, "version": self.model.version}


class KeyLimit(Strict):
    rate_per_s: float = Field(gt=0, le=100_000, description="Sustained requests per second per API key.")
    burst: int = Field(ge=1, le=100_000, description="Bucket size: requests allowed at once.")


class Limits(Strict):
    per_key: KeyLimit | None = Field(default_factory=lambda: KeyLimit(rate_per_s=5, burst=20))


class RoutesFile(Strict):
    default: str | None = Field(default=None, description="Route for OpenAI requests that name no model.")
    limits: Limits = Field(default_factory=Limits)
    routes: dict[str, Route] = Field(default_factory=dict)

    @field_validator("routes")
    @classmethod
    def _names(cls, routes: dict[str, Route]) -> dict[str, Route]:
        bad = [name for name in routes if not ROUTE_NAME.match(name)]
        if bad:
            raise ValueError(f"route names must match {ROUTE_NAME.pattern}: {', '.join(map(repr, bad))}")
        return routes

    @model_validator(mode="after")
    def _default_exists(self) -> RoutesFile:
        if self.default is not None and self.default not in self.routes:
            raise ValueError(f"default route {self.default!r} is not defined under `routes`")
        return self


@dataclass(frozen=True)
class RouteTable:
    """One validated routes file, as it went live."""

    spec: RoutesFile
    digest: str | None
    source: str
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def routes(self) -> dict[str, Route]:
        return self.spec.routes

    def resolve(self, name: str | None) -> tuple[str, Route] | None:
        if not name:
            if self.spec.default is not None:
                return self.spec.default, self.spec.routes[self.spec.default]
            if len(self.spec.routes) == 1:
                return next(iter(self.spec.routes.items()))
            return None
        route = self.spec.routes.get(name)
        return (name, route) if route is not None else None


def file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def load_routes(path: Path, raw: bytes | None = None, *, from_bundle: bool = False) -> RouteTable:
    """Parse and validate a routes file (from `raw`, the bytes of a bundle snapshot, when given); a
    missing file is an empty table. Raise RoutesError."""
    path = Path(path)
    if raw is None and (from_bundle or not path.exists()):
        return RouteTable(RoutesFile(), None, str(path))
    try:
        data, node = read_yaml(path, raw)
    except PolicyError as exc:
        raise RoutesError(exc.errors) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RoutesError(
            [f"{path}:1: the file must hold a mapping with `routes:`, not {type(data).__name__}"]
        )
    try:
        spec = RoutesFile.model_validate(data)
    except ValidationError as exc:
        raise RoutesError(validation_errors(path, node, exc)) from None
    digest = hashlib.sha256(raw).hexdigest() if raw is not None else file_digest(path)
    return RouteTable(spec, digest, str(path))
