"""Upstream clients against `httpx.MockTransport` fakes: what each kind sends, how its answer is
read, and the retry rule — retry only on connect errors and 502/503/504, never after a timeout
or any other answer; image URLs are fetched only from the upstream's own origin."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway.upstream import Route, UpstreamCall, UpstreamFailure, call_upstream

PNG = b"\x89PNG\r\n\x1a\nfake-png-bytes"
Handler = Callable[[httpx.Request], httpx.Response]


def route(**kw: Any) -> Route:
    base: dict[str, Any] = {
        "kind": "openai-images",
        "url": "http://up.test",
        "use": "txt2img",
        "model": {"name": "m", "version": "1"},
        "retries": 2,
    }
    return Route.model_validate({**base, **kw})


def run(
    r: Route, handler: Handler, call: UpstreamCall | None = None, max_bytes: int = 10_000_000
) -> list[bytes]:
    async def go() -> list[bytes]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            return await call_upstream(http, r, call or UpstreamCall(prompt="a cat"), max_bytes=max_bytes)

    return asyncio.run(go())


def b64(data: bytes = PNG) -> str:
    return base64.b64encode(data).decode()


class Recorder:
    """A fake upstream: answers from a script, one entry per request, and keeps the requests."""

    def __init__(self, *script: Callable[[httpx.Request], httpx.Response]):
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.script.pop(0)(request)


def ok_openai(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"created": 1, "data": [{"b64_json": b64()}]})


def status(code: int) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(code, json={"error": {"message": f"failed {code}"}})


def raises(exc: type[Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)  # type: ignore[call-arg]

    return handler


def test_openai_generation_request_and_answer() -> None:
    fake = Recorder(ok_openai)
    out = run(
        route(upstream_model="dall-e-3", params={"quality": "hd"}),
        fake,
        UpstreamCall(prompt="a cat", n=1, size="512x512", extra={"style": "vivid"}),
    )
    assert out == [PNG]
    [req] = fake.requests
    assert str(req.url) == "http://up.test/v1/images/generations"
    assert json.loads(req.content) == {
        "model": "dall-e-3",
        "prompt": "a cat",
        "n": 1,
        "size": "512x512",
        "response_format": "b64_json",
        "quality": "hd",
        "style": "vivid",
    }


def test_openai_base_url_ending_in_v1_is_kept() -> None:
    fake = Recorder(ok_openai)
    run(route(url="https://api.example/v1", send_response_format=False), fake)
    assert str(fake.requests[0].url) == "https://api.example/v1/images/generations"
    assert "response_format" not in json.loads(fake.requests[0].content)


def test_openai_edit_is_multipart_with_images_and_mask() -> None:
    fake = Recorder(ok_openai)
    run(route(), fake, UpstreamCall(prompt="edit", images=[PNG, PNG], mask=PNG))
    req = fake.requests[0]
    assert str(req.url).endswith("/v1/images/edits")
    assert req.headers["content-type"].startswith("multipart/form-data")
    body = req.content
    assert body.count(b'name="image[]"') == 2 and body.count(b'name="mask"') == 1
    assert b'name="prompt"' in body


def test_api_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Recorder(ok_openai)
    monkeypatch.setenv("CONSENTGATE_UPSTREAM_TOKEN_TEST", "s3cret")
    run(route(api_key_env="CONSENTGATE_UPSTREAM_TOKEN_TEST"), fake)
    assert fake.requests[0].headers["authorization"] == "Bearer s3cret"
    monkeypatch.delenv("CONSENTGATE_UPSTREAM_TOKEN_TEST")
    with pytest.raises(UpstreamFailure, match="not set"):
        run(route(api_key_env="CONSENTGATE_UPSTREAM_TOKEN_TEST"), Recorder(ok_openai))


@pytest.mark.parametrize(
    "first", [raises(httpx.ConnectError), raises(httpx.ConnectTimeout), status(502), status(503), status(504)]
)
def test_retried_failures(first: Handler) -> None:
    fake = Recorder(first, ok_openai)
    assert run(route(), fake) == [PNG]
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    "first,reason",
    [
        (status(500), "status"),
        (status(400), "status"),
        (status(429), "status"),
        (raises(httpx.ReadTimeout), "timeout"),
        (raises(httpx.RemoteProtocolError), "connect"),
    ],
)
def test_never_retried_failures(first: Handler, reason: str) -> None:
    fake = Recorder(first, ok_openai)
    with pytest.raises(UpstreamFailure) as caught:
        run(route(), fake)
    assert caught.value.reason == reason
    assert len(fake.requests) == 1


def test_retries_are_bounded() -> None:
    fake = Recorder(*[status(503)] * 5)
    with pytest.raises(UpstreamFailure) as caught:
        run(route(retries=2), fake)
    assert caught.value.status == 503 and len(fake.requests) == 3
    fake = Recorder(raises(httpx.ConnectError))
    with pytest.raises(UpstreamFailure, match="could not connect"):
        run(route(retries=0), fake)


def test_upstream_error_message_is_carried() -> None:
    with pytest.raises(UpstreamFailure, match="400: failed 400"):
        run(route(), Recorder(status(400)))


@pytest.mark.parametrize(
    "answer", [{"data": []}, {"data": [{}]}, {"nothing": 1}, {"data": [{"b64_json": "***"}]}]
)
def test_malformed_answers(answer: dict[str, Any]) -> None:
    with pytest.raises(UpstreamFailure) as caught:
        run(route(), Recorder(lambda r: httpx.Response(200, json=answer)))
    assert caught.value.reason == "bad_response"


def test_not_json_and_too_large() -> None:
    with pytest.raises(UpstreamFailure, match="not JSON"):
        run(route(), Recorder(lambda r: httpx.Response(200, content=b"<html>")))
    with pytest.raises(UpstreamFailure, match="larger than"):
        run(route(), Recorder(ok_openai), max_bytes=10)


def test_url_answers_fetched_from_same_origin_only() -> None:
    fake = Recorder(
        lambda r: httpx.Response(200, json={"data": [{"url": "/files/1"}]}),
        lambda r: httpx.Response(200, content=PNG),
    )
    assert run(route(), fake) == [PNG]
    assert str(fake.requests[1].url) == "http://up.test/files/1"
    elsewhere = Recorder(lambda r: httpx.Response(200, json={"data": [{"url": "http://169.254.169.254/x"}]}))
    with pytest.raises(UpstreamFailure, match="another origin"):
        run(route(), elsewhere)
    assert len(elsewhere.requests) == 1


def test_only_n_images_are_kept() -> None:
    many = Recorder(
        lambda r: httpx.Response(200, json={"data": [{"b64_json": b64(PNG + bytes([i]))} for i in range(3)]})
    )
    assert run(route(), many, UpstreamCall(prompt="x", n=2)) == [PNG + b"\x00", PNG + b"\x01"]


def test_automatic1111_txt2img_and_img2img() -> None:
    fake = Recorder(
        lambda r: httpx.Response(200, json={"images": [b64(), b64()]}),
        lambda r: httpx.Response(200, json={"images": [b64()]}),
    )
    r = route(kind="automatic1111", params={"steps": 20})
    assert run(r, fake, UpstreamCall(prompt="a fox", n=2, size="640x480")) == [PNG, PNG]
    sent = json.loads(fake.requests[0].content)
    assert str(fake.requests[0].url) == "http://up.test/sdapi/v1/txt2img"
    assert sent == {"prompt": "a fox", "batch_size": 2, "n_iter": 1, "steps": 20, "width": 640, "height": 480}
    run(r, fake, UpstreamCall(prompt="edit", images=[PNG], mask=PNG))
    sent = json.loads(fake.requests[1].content)
    assert str(fake.requests[1].url) == "http://up.test/sdapi/v1/img2img"
    assert sent["init_images"] == [b64()] and sent["mask"] == b64()


def test_http_json_template_and_response_path() -> None:
    fake = Recorder(
        lambda r: httpx.Response(200, json={"result": {"items": [{"png": "data:image/png;base64," + b64()}]}})
    )
    r = route(
        kind="http-json",
        http_json={
            "path": "/run",
            "request": {"input": {"text": "{prompt}", "num": "{n}", "seed": "{seed}"}},
            "response_path": "result.items.*.png",
            "headers": {"x-model": "v2"},
        },
    )
    assert run(r, fake, UpstreamCall(prompt="a fox", extra={"seed": 42})) == [PNG]
    req = fake.requests[0]
    assert str(req.url) == "http://up.test/run" and req.headers["x-model"] == "v2"
    assert json.loads(req.content) == {"input": {"text": "a fox", "num": 1, "seed": 42}}


def test_http_json_errors_are_upstream_failures() -> None:
    r = route(kind="http-json", http_json={"path": "/run", "request": {"q": "{nope}"}, "response_path": "x"})
    with pytest.raises(UpstreamFailure, match="template"):
        run(r, Recorder())
    r = route(kind="http-json", http_json={"path": "/run", "response_path": "x.y"})
    with pytest.raises(UpstreamFailure, match="response_path"):
        run(r, Recorder(lambda req: httpx.Response(200, json={"x": {}})))
    with pytest.raises(UpstreamFailure, match="no reference images"):
        run(r, Recorder(), UpstreamCall(prompt="x", images=[PNG]))


def test_api_key_env_must_be_an_upstream_variable() -> None:
    """A policy edit must not be able to send e.g. the database URL to an upstream as a token."""
    import pydantic

    with pytest.raises(pydantic.ValidationError):
        route(api_key_env="CONSENTGATE_DATABASE_URL")
