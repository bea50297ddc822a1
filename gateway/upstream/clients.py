"""Why: each kind of generation backend speaks its own dialect; this module turns one
`UpstreamCall` into that dialect and the answer back into image bytes, with the one retry rule
the gateway allows — retry only when the request cannot have produced anything (connect errors)
or the upstream says it is temporarily unavailable (502/503/504). Never after a timeout or an
answer: an upstream may have rendered already. Anything else is an `UpstreamFailure`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from gateway.media import sniff
from gateway.upstream.errors import TemplateError, UpstreamFailure
from gateway.upstream.routes import Route
from gateway.upstream.template import extract, render

RETRY_STATUS = frozenset({502, 503, 504})


@dataclass(frozen=True)
class UpstreamCall:
    prompt: str
    n: int = 1
    size: str | None = None
    images: list[bytes] = field(default_factory=list)
    mask: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_edit(self) -> bool:
        return bool(self.images)

    def width_height(self) -> tuple[int | None, int | None]:
        if not self.size or "x" not in self.size:
            return None, None
        w, _, h = self.size.partition("x")
        return (int(w), int(h)) if w.isdigit() and h.isdigit() else (None, None)


def _headers(route: Route, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {"user-agent": "consentgate-proxy/0.1", **(extra or {})}
    if route.api_key_env:
        token = os.environ.get(route.api_key_env)
        if not token:
            raise UpstreamFailure(
                f"the upstream key variable {route.api_key_env} is not set", reason="config"
            )
        headers["authorization"] = f"Bearer {token}"
    return headers


def _timeout(route: Route) -> httpx.Timeout:
    return httpx.Timeout(route.timeout_s, connect=min(5.0, route.timeout_s))


async def send(
    http: httpx.AsyncClient,
    route: Route,
    build: Callable[[], httpx.Request],
    *,
    max_bytes: int,
    backoff_s: float = 0.2,
) -> httpx.Response:
    """Send with the retry rule; read at most `max_bytes` of the answer."""
    for attempt in range(route.retries + 1):
        last = attempt == route.retries
        try:
            response = await http.send(build(), stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if not last:
                await asyncio.sleep(backoff_s * 2**attempt)
                continue
            raise UpstreamFailure(
                f"could not connect to the upstream ({type(exc).__name__})", reason="connect"
            ) from None
        except httpx.TimeoutException:
            raise UpstreamFailure(
                f"the upstream did not answer within {route.timeout_s:g} s", reason="timeout"
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamFailure(
                f"upstream request failed ({type(exc).__name__}: {exc})", reason="connect"
            ) from None
        try:
            if response.status_code in RETRY_STATUS and not last:
                await response.aclose()
                await asyncio.sleep(backoff_s * 2**attempt)
                continue
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise UpstreamFailure(
                        f"the upstream answer is larger than {max_bytes} bytes", reason="bad_response"
                    )
        except httpx.TimeoutException:
            raise UpstreamFailure(
                f"the upstream did not answer within {route.timeout_s:g} s", reason="timeout"
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamFailure(
                f"reading the upstream answer failed ({type(exc).__name__})", reason="connect"
            ) from None
        finally:
            await response.aclose()
        return httpx.Response(
            response.status_code, headers=response.headers, content=bytes(body), request=response.request
        )
    raise AssertionError("unreachable")


def _json(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        detail = ""
        try:
            err = response.json().get("error")
            detail = err.get("message", "") if isinstance(err, dict) else str(err or "")
        except (ValueError, AttributeError):
            detail = response.text[:200]
        raise UpstreamFailure(
            f"the upstream answered {response.status_code}" + (f": {detail[:200]}" if detail else ""),
            reason="status",
            status=response.status_code,
        )
    try:
        return response.json()
    except ValueError:
        raise UpstreamFailure("the upstream answer is not JSON", reason="bad_response") from None


def b64decode(value: Any) -> bytes:
    if not isinstance(value, str):
        raise UpstreamFailure(f"expected a base64 image, got {type(value).__name__}", reason="bad_response")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise UpstreamFailure(
            "an image in the upstream answer is not valid base64", reason="bad_response"
        ) from None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _file(name: str, data: bytes) -> tuple[str, tuple[str, bytes, str]]:
    mime = sniff(data) or "application/octet-stream"
    ext = mime.rpartition("/")[2]
    return name, (f"{name.strip('[]')}.{ext}", data, mime)


async def _fetch_same_origin(http: httpx.AsyncClient, route: Route, url: str, max_bytes: int) -> bytes:
    """Images returned by URL are fetched only from the upstream's own origin (no SSRF)."""
    absolute = urljoin(route.url + "/", url)
    want, got = urlsplit(route.url), urlsplit(absolute)
    if (got.scheme, got.hostname, got.port) != (want.scheme, want.hostname, want.port):
        raise UpstreamFailure(
            "the upstream returned an image URL on another origin; not fetched", reason="bad_response"
        )
    response = await send(
        http,
        route,
        lambda: http.build_request("GET", absolute, headers=_headers(route), timeout=_timeout(route)),
        max_bytes=max_bytes,
    )
    if response.status_code >= 400:
        raise UpstreamFailure(
            f"fetching an upstream image answered {response.status_code}",
            reason="status",
            status=response.status_code,
        )
    return response.content


def _openai_base(route: Route) -> str:
    return route.url if urlsplit(route.url).path.rstrip("/").endswith("/v1") else route.url + "/v1"


async def openai_images(
    http: httpx.AsyncClient, route: Route, call: UpstreamCall, max_bytes: int
) -> list[bytes]:
    fields: dict[str, Any] = {
        "model": route.upstream_model or route.model.name,
        "prompt": call.prompt,
        "n": call.n,
        **call.extra,
        **route.params,  # the operator's fixed fields win over the client's
    }
    if call.size:
        fields["size"] = call.size
    if route.send_response_format:
        fields["response_format"] = "b64_json"
    base = _openai_base(route)
    if call.is_edit:
        key = "image" if len(call.images) == 1 else "image[]"
        files = [_file(key, data) for data in call.images]
        if call.mask is not None:
            files.append(_file("mask", call.mask))
        form = {k: str(v) for k, v in fields.items() if v is not None}

        def build() -> httpx.Request:
            return http.build_request(
                "POST",
                base + "/images/edits",
                data=form,
                files=files,
                headers=_headers(route),
                timeout=_timeout(route),
            )
    else:

        def build() -> httpx.Request:
            return http.build_request(
                "POST",
                base + "/images/generations",
                json=fields,
                headers=_headers(route),
                timeout=_timeout(route),
            )

    doc = _json(await send(http, route, build, max_bytes=max_bytes))
    items = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise UpstreamFailure("the upstream answer has no `data` images", reason="bad_response")
    out = []
    for item in items:
        if isinstance(item, dict) and item.get("b64_json"):
            out.append(b64decode(item["b64_json"]))
        elif isinstance(item, dict) and item.get("url"):
            out.append(await _fetch_same_origin(http, route, str(item["url"]), max_bytes))
        else:
            raise UpstreamFailure("an upstream image has neither b64_json nor url", reason="bad_response")
    return out


async def automatic1111(
    http: httpx.AsyncClient, route: Route, call: UpstreamCall, max_bytes: int
) -> list[bytes]:
    width, height = call.width_height()
    body: dict[str, Any] = {
        "prompt": call.prompt,
        "batch_size": call.n,
        "n_iter": 1,
        **call.extra,
        **route.params,  # the operator's fixed fields win over the client's
    }
    if width and height:
        body.update(width=width, height=height)
    path = "/sdapi/v1/txt2img"
    if call.is_edit:
        path = "/sdapi/v1/img2img"
        body["init_images"] = [b64(data) for data in call.images]
        if call.mask is not None:
            body["mask"] = b64(call.mask)
    doc = _json(
        await send(
            http,
            route,
            lambda: http.build_request(
                "POST", route.url + path, json=body, headers=_headers(route), timeout=_timeout(route)
            ),
            max_bytes=max_bytes,
        )
    )
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list) or not images:
        raise UpstreamFailure("the upstream answer has no `images`", reason="bad_response")
    return [b64decode(item) for item in images]


async def http_json(http: httpx.AsyncClient, route: Route, call: UpstreamCall, max_bytes: int) -> list[bytes]:
    spec = route.http_json
    assert spec is not None
    width, height = call.width_height()
    values: dict[str, Any] = {
        **call.extra,
        **route.params,  # the operator's fixed fields win over the client's
        "prompt": call.prompt,
        "n": call.n,
        "size": call.size,
        "width": width,
        "height": height,
        "image": b64(call.images[0]) if call.images else None,
        "images": [b64(d) for d in call.images],
        "mask": b64(call.mask) if call.mask is not None else None,
    }
    if call.is_edit:
        if spec.edit_path is None:
            raise UpstreamFailure("this route takes no reference images", reason="config")
        path, template = spec.edit_path, spec.edit_request or spec.request
    else:
        path, template = spec.path, spec.request
    try:
        body = render(template, values)
    except TemplateError as exc:
        raise UpstreamFailure(f"the route's request template failed: {exc}", reason="config") from None
    doc = _json(
        await send(
            http,
            route,
            lambda: http.build_request(
                "POST",
                route.url + path,
                json=body,
                headers=_headers(route, spec.headers),
                timeout=_timeout(route),
            ),
            max_bytes=max_bytes,
        )
    )
    try:
        found = extract(doc, spec.response_path)
    except TemplateError as exc:
        raise UpstreamFailure(f"no images at response_path: {exc}", reason="bad_response") from None
    if not found:
        raise UpstreamFailure("no images at response_path", reason="bad_response")
    if spec.response_encoding == "url":
        return [await _fetch_same_origin(http, route, str(u), max_bytes) for u in found]
    return [b64decode(item) for item in found]


async def openai_audio(http: httpx.AsyncClient, route: Route, call: UpstreamCall, max_bytes: int) -> list[bytes]:
    """OpenAI `POST /v1/audio/speech`: JSON {model, input, voice, response_format, speed?} in, the
    audio file's bytes out (issue #18). The gateway checks those bytes as audio, not as an image."""
    base = _openai_base(route)
    body: dict[str, Any] = {
        "model": route.upstream_model or route.model.name, "input": call.prompt,
        "voice": call.extra.get("voice", "alloy"), "response_format": call.extra.get("response_format", "mp3"),
        **{k: v for k, v in call.extra.items() if k in ("speed", "instructions")}, **route.params,
    }

    def build() -> httpx.Request:
        return http.build_request("POST", f"{base}/audio/speech", json=body, headers=_headers(route),
                                  timeout=_timeout(route))

    response = await send(http, route, build, max_bytes=max_bytes)
    if response.status_code >= 400:
        _json(response)  # raises the UpstreamFailure with the upstream's message
    if not response.content:
        raise UpstreamFailure("the upstream answered no audio", reason="bad_response")
    return [response.content]


CLIENTS = {"openai-images": openai_images, "automatic1111": automatic1111, "http-json": http_json,
           "openai-audio": openai_audio}


async def call_upstream(
    http: httpx.AsyncClient, route: Route, call: UpstreamCall, *, max_bytes: int
) -> list[bytes]:
    """The images the upstream rendered for `call` (at most `call.n`), or UpstreamFailure."""
    images = await CLIENTS[route.kind](http, route, call, max_bytes)
    return images[: call.n]
