"""Why: generation services call the gateway from Python; this client gives them the four verbs
(check, release, generate, verify) with typed answers and one exception for every refusal, in a
sync (`ConsentgateClient`) and an async (`AsyncConsentgateClient`) flavour that share the request
building and answer parsing — only the transport call differs. Pass `transport=` (for example
`httpx.MockTransport` or `httpx.ASGITransport`) to test without a network.

    with ConsentgateClient("http://127.0.0.1:8080", api_key) as cg:
        try:
            out = cg.generate("demo", "a lighthouse at dusk")
        except PolicyDenied as denied:
            print(denied.code, denied.decision_id)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx

__all__ = [
    "AsyncConsentgateClient",
    "ConsentgateClient",
    "ConsentgateError",
    "GeneratedImage",
    "GenerateResult",
    "PolicyDenied",
    "Released",
]

T = TypeVar("T")


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


@dataclass(frozen=True)
class Released:
    data: bytes
    mime: str
    decision_id: str
    decision: str
    audit_index: int


@dataclass(frozen=True)
class GeneratedImage:
    decision_id: str
    audit_index: int
    mime: str
    data: bytes | None = None
    url: str | None = None


@dataclass(frozen=True)
class GenerateResult:
    request_id: str
    route: str
    input_decision: dict[str, Any]
    images: list[GeneratedImage]
    withheld: list[dict[str, Any]] = field(default_factory=list)


def raise_for_answer(response: httpx.Response) -> None:
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


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and how to read its answer; run by either client."""

    method: str
    path: str
    kwargs: dict[str, Any]
    parse: Callable[[httpx.Response], T]

    def read(self, response: httpx.Response) -> T:
        raise_for_answer(response)
        return self.parse(response)


def _media(parts: Sequence[bytes], name: str = "media") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(name, (f"{name}{i}", data, "application/octet-stream")) for i, data in enumerate(parts)]


def _request(
    stage: str | None, use: str, prompt: str | None, end_user: str | None, metadata: dict[str, Any] | None
) -> str:
    body: dict[str, Any] = {"use": use, "metadata": metadata or {}}
    if stage is not None:
        body["stage"] = stage
    if prompt is not None:
        body["prompt"] = prompt
    if end_user is not None:
        body["end_user"] = end_user
    return json.dumps(body)


def check_call(
    media: Sequence[bytes],
    *,
    use: str,
    stage: str = "input",
    prompt: str | None = None,
    end_user: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Call[dict[str, Any]]:
    kwargs: dict[str, Any] = {"data": {"request": _request(stage, use, prompt, end_user, metadata)}}
    if media:
        kwargs["files"] = _media(media)
    return Call("POST", "/v1/check", kwargs, lambda r: r.json())


def release_call(
    data: bytes,
    *,
    use: str,
    prompt: str | None = None,
    end_user: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Call[Released]:
    def parse(r: httpx.Response) -> Released:
        return Released(
            r.content,
            r.headers.get("content-type", ""),
            r.headers["x-decision-id"],
            r.headers["x-decision"],
            int(r.headers["x-audit-index"]),
        )

    kwargs = {"data": {"request": _request(None, use, prompt, end_user, metadata)}, "files": _media([data])}
    return Call("POST", "/v1/release", kwargs, parse)


def generate_call(
    route: str,
    prompt: str,
    *,
    images: Sequence[bytes] = (),
    mask: bytes | None = None,
    n: int = 1,
    size: str | None = None,
    end_user: str | None = None,
    response_format: str = "b64_json",
    **extra: Any,
) -> Call[GenerateResult]:
    body: dict[str, Any] = {"prompt": prompt, "n": n, "response_format": response_format, **extra}
    if size is not None:
        body["size"] = size
    if end_user is not None:
        body["end_user"] = end_user
    if images:
        files = _media(images) + (_media([mask], "mask") if mask is not None else [])
        kwargs: dict[str, Any] = {"data": {"request": json.dumps(body)}, "files": files}
    else:
        kwargs = {"json": body}

    def parse(r: httpx.Response) -> GenerateResult:
        doc = r.json()
        out = [
            GeneratedImage(
                i["decision_id"],
                int(i["audit_index"]),
                i.get("type", ""),
                base64.b64decode(i["b64_json"]) if i.get("b64_json") else None,
                i.get("url"),
            )
            for i in doc["images"]
        ]
        return GenerateResult(
            doc["request_id"], doc["route"], doc["input_decision"], out, doc.get("withheld", [])
        )

    return Call("POST", f"/v1/generate/{route}", kwargs, parse)


def verify_call(data: bytes) -> Call[dict[str, Any]]:
    return Call("POST", "/v1/provenance/verify", {"files": _media([data])}, lambda r: r.json())


def routes_call() -> Call[dict[str, Any]]:
    return Call("GET", "/v1/routes", {}, lambda r: r.json())


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": "consentgate-python/0.1"}


class ConsentgateClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def _run(self, call: Call[T]) -> T:
        return call.read(self._http.request(call.method, call.path, **call.kwargs))

    def check(self, media: Sequence[bytes] = (), **kw: Any) -> dict[str, Any]:
        """The decision record (200 whatever the verdict). kw: use, stage, prompt, end_user, metadata."""
        return self._run(check_call(media, **kw))

    def release(self, data: bytes, **kw: Any) -> Released:
        """The marked and signed file, or PolicyDenied. kw: use, prompt, end_user, metadata."""
        return self._run(release_call(data, **kw))

    def generate(self, route: str, prompt: str, **kw: Any) -> GenerateResult:
        """Proxy a generation via `route`. kw: images, mask, n, size, end_user, response_format, extras."""
        return self._run(generate_call(route, prompt, **kw))

    def verify(self, data: bytes) -> dict[str, Any]:
        return self._run(verify_call(data))

    def routes(self) -> dict[str, Any]:
        return self._run(routes_call())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ConsentgateClient:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncConsentgateClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def _run(self, call: Call[T]) -> T:
        return call.read(await self._http.request(call.method, call.path, **call.kwargs))

    async def check(self, media: Sequence[bytes] = (), **kw: Any) -> dict[str, Any]:
        return await self._run(check_call(media, **kw))

    async def release(self, data: bytes, **kw: Any) -> Released:
        return await self._run(release_call(data, **kw))

    async def generate(self, route: str, prompt: str, **kw: Any) -> GenerateResult:
        return await self._run(generate_call(route, prompt, **kw))

    async def verify(self, data: bytes) -> dict[str, Any]:
        return await self._run(verify_call(data))

    async def routes(self) -> dict[str, Any]:
        return await self._run(routes_call())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncConsentgateClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
