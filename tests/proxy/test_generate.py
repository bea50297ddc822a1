"""`/v1/generate/{route}` through a real gateway server and the reference upstream: the three
upstream kinds, edits, several images, the retry rule, failures recorded before the 502, rate
limits (memory and Redis), per-route concurrency, routes listing and reload, blob URLs."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.provenance import read_manifest
from gateway.ratelimit import RedisRateLimiter
from tests.api.conftest import png
from tests.proxy.conftest import ProxyEnv, routes_yaml


def trusted(env: ProxyEnv, image: dict[str, Any]) -> bool:
    data = base64.b64decode(image["b64_json"])
    return read_manifest(data, image["type"], env.gw.provenance.trust_anchors_pem).state == "Trusted"


@pytest.mark.db
@pytest.mark.parametrize(
    "route,endpoint", [("demo", "generations"), ("sd", "txt2img"), ("generic", "generate")]
)
def test_each_upstream_kind_round_trips(env: ProxyEnv, route: str, endpoint: str) -> None:
    resp = env.post(f"/v1/generate/{route}", json={"prompt": "a red barn in snow", "size": "320x256"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["route"] == route and body["withheld"] == []
    assert resp.headers["x-request-id"] == body["request_id"]
    assert body["input_decision"]["decision"] == "allow" and body["input_decision"]["stage"] == "input"
    [image] = body["images"]
    assert trusted(env, image)
    out = env.record(image["audit_index"])
    assert out["decision_id"] == image["decision_id"] and out["stage"] == "output"
    assert out["request_id"] == body["input_decision"]["request_id"] == body["request_id"]
    assert out["media"][0]["width"] == 320 and out["media"][0]["height"] == 256  # size reached the upstream
    assert env.upstream.count(endpoint) == 1


@pytest.mark.parametrize("route,endpoint", [("demo", "edits"), ("sd", "img2img"), ("generic", "generate")])
def test_multipart_edit_checks_reference_as_edit_use(
    env: ProxyEnv, coffee: np.ndarray, route: str, endpoint: str
) -> None:
    resp = env.post(
        f"/v1/generate/{route}",
        data={"request": json.dumps({"prompt": "a cup in space"})},
        files=[("media", ("cup.png", png(coffee), "image/png"))],
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["input_decision"]["use"] == "img2img"
    assert len(body["input_decision"]["media"]) == 1
    assert env.upstream.count(endpoint) == 1 and env.upstream.calls[0].images == 1


def test_several_images_each_get_their_own_decision(env: ProxyEnv) -> None:
    before = env.audit_size()
    resp = env.post("/v1/generate/demo", json={"prompt": "three kites", "n": 3})
    assert resp.status_code == 200, resp.text
    images = resp.json()["images"]
    assert len({i["decision_id"] for i in images}) == 3
    assert len({i["b64_json"] for i in images}) == 3
    assert env.audit_size() == before + 4
    assert env.upstream.calls[0].n == 3


def test_n_over_route_limit_is_422(env: ProxyEnv) -> None:
    resp = env.post("/v1/generate/demo", json={"prompt": "kites", "n": 5})
    assert resp.status_code == 422
    assert env.upstream.count() == 0


def test_input_deny_never_calls_upstream(env: ProxyEnv) -> None:
    before = env.audit_size()
    resp = env.post("/v1/generate/demo", json={"prompt": "nudify the photo"})
    assert resp.status_code == 403
    body = resp.json()
    assert body["error"]["code"] == "policy_denied"
    assert (
        body["decision"]["stage"] == "input"
        and body["error"]["decision_id"] == body["decision"]["decision_id"]
    )
    assert env.upstream.count() == 0 and env.audit_size() == before + 1


def test_retry_on_503_only(env: ProxyEnv) -> None:
    env.upstream.fail_next = [503]
    ok = env.post("/v1/generate/demo", json={"prompt": "a harbour"})
    assert ok.status_code == 200, ok.text
    assert env.upstream.count("generations") == 2  # one refused, one retried

    env.upstream.reset()
    env.upstream.fail_next = [500]
    before = env.audit_size()
    failed = env.post("/v1/generate/demo", json={"prompt": "a harbour"})
    assert failed.status_code == 502
    err = failed.json()["error"]
    assert err["code"] == "upstream_error" and "500" in err["message"]
    assert env.upstream.count("generations") == 1  # a 500 is never retried
    failure = env.record(before + 1)
    assert failure["decision_id"] == err["decision_id"] and failure["decision"] == "deny"
    assert failure["reasons"][0]["rule"] == "upstream.failed" and failure["stage"] == "output"
    assert failure["request_id"] == err["request_id"] == env.record(before)["request_id"]


def test_upstream_that_returns_no_image_is_502_and_recorded(env: ProxyEnv) -> None:
    env.upstream.corrupt_next = 1
    before = env.audit_size()
    resp = env.post("/v1/generate/demo", json={"prompt": "a harbour"})
    assert resp.status_code == 502
    record = env.record(before + 1)
    assert record["reasons"][0]["rule"] == "upstream.bad_output" and record["outputs"] == []
    assert resp.json()["error"]["decision_id"] == record["decision_id"]


def test_unknown_route_404_and_bad_body_422(env: ProxyEnv) -> None:
    assert env.post("/v1/generate/nope", json={"prompt": "x"}).json()["error"]["code"] == "route_not_found"
    assert env.post("/v1/generate/demo", json={"prompt": ""}).status_code == 422
    assert (
        env.post("/v1/generate/demo", json={"prompt": "x", "model": "other"}).status_code == 422
    )  # reserved
    assert env.post("/v1/generate/demo", json={"prompt": "x", "nested": {"a": 1}}).status_code == 422
    assert (
        env.post("/v1/generate/demo", content=b"prompt=x", headers={"content-type": "text/plain"}).status_code
        == 415
    )
    assert env.upstream.count() == 0


def test_extra_scalars_reach_the_upstream(env: ProxyEnv) -> None:
    resp = env.post("/v1/generate/sd", json={"prompt": "a fox", "negative_prompt": "blurry", "steps": 4})
    assert resp.status_code == 200, resp.text


def test_generator_role_required(env: ProxyEnv) -> None:
    gw = env.gw
    auditor = gw.apikeys.create("acme", "auditor")[1]
    assert env.post("/v1/generate/demo", auditor, json={"prompt": "x"}).status_code == 403
    assert httpx.post(env.url + "/v1/generate/demo", json={"prompt": "x"}).status_code == 401


# ---- limits -------------------------------------------------------------------------------


def _limited(env: ProxyEnv) -> None:
    """With a burst of 1 and a trickle of tokens: one request passes, the next is 429."""
    key = env.gw.apikeys.create("acme", "generator")[1]
    first = env.post("/v1/generate/demo", key, json={"prompt": "a kite"})
    assert first.status_code == 200, first.text
    before, calls = env.audit_size(), env.upstream.count()
    second = env.post("/v1/generate/demo", key, json={"prompt": "a kite"})
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limited"
    assert int(second.headers["retry-after"]) >= 100  # 0.001 tokens/s: about 1000 s to the next token
    assert env.audit_size() == before and env.upstream.count() == calls  # refused before anything
    other = env.post("/v1/generate/demo", env.keys.globex, json={"prompt": "a kite"})
    assert other.status_code == 200  # buckets are per key
    openai_style = env.post("/v1/images/generations", key, json={"prompt": "a kite", "model": "demo"})
    assert openai_style.status_code == 429 and openai_style.headers["retry-after"]
    assert openai_style.json()["error"]["type"] == "rate_limit_error"


@pytest.fixture
def strict_limits(env: ProxyEnv) -> Any:
    state = env.gw.proxy
    env.routes_path.write_text(routes_yaml(env.upstream_url, per_key="{rate_per_s: 0.001, burst: 1}"))
    assert state.routes.reload()
    yield state
    env.routes_path.write_text(routes_yaml(env.upstream_url))
    assert state.routes.reload()


def test_rate_limit_memory(env: ProxyEnv, strict_limits: Any) -> None:
    _limited(env)


def test_rate_limit_redis(env: ProxyEnv, strict_limits: Any, redis_url: str) -> None:
    state = strict_limits
    original = state.limiter
    state.limiter = RedisRateLimiter(redis_url, prefix=f"cg-test-{secrets.token_hex(4)}:")
    try:
        _limited(env)
        assert state.limiter.fallback._buckets == {}  # Redis answered every time
    finally:
        limiter, state.limiter = state.limiter, original
        import asyncio

        # the Redis connections belong to the server's event loop: close them there
        asyncio.run_coroutine_threadsafe(limiter.aclose(), state._loop).result(10)


def test_route_concurrency_limit_is_429_route_busy(env: ProxyEnv) -> None:
    env.upstream.hold = threading.Event()
    results: list[httpx.Response] = []
    worker = threading.Thread(
        target=lambda: results.append(env.post("/v1/generate/narrow", json={"prompt": "a"}))
    )
    worker.start()
    try:
        assert env.upstream.entered.wait(60), "the first request never reached the upstream"
        busy = env.post("/v1/generate/narrow", json={"prompt": "b"})
        assert busy.status_code == 429 and busy.json()["error"]["code"] == "route_busy"
        assert busy.headers["retry-after"] == "1"
    finally:
        env.upstream.hold.set()
        worker.join(60)
    assert results and results[0].status_code == 200
    assert env.upstream.count() == 1


# ---- routes -------------------------------------------------------------------------------


def test_routes_listing_hides_upstream_urls_from_tenants(env: ProxyEnv) -> None:
    tenant = httpx.get(env.url + "/v1/routes", headers=env.headers()).json()
    names = [r["name"] for r in tenant["routes"]]
    assert names == sorted(["demo", "sd", "generic", "narrow", "down"])
    assert all("url" not in r for r in tenant["routes"]) and "status" not in tenant
    demo = next(r for r in tenant["routes"] if r["name"] == "demo")
    assert demo["model"] == {"name": "demo-upstream", "version": "1"} and demo["use"] == "txt2img"
    operator = httpx.get(env.url + "/v1/routes", headers=env.headers(env.keys.operator_admin)).json()
    assert next(r for r in operator["routes"] if r["name"] == "demo")["url"] == env.upstream_url
    assert operator["status"]["last_error"] is None


def test_bad_routes_file_is_refused_and_last_good_keeps_serving(env: ProxyEnv) -> None:
    state = env.gw.proxy
    good = env.routes_path.read_text()
    env.routes_path.write_text(good.replace("kind: automatic1111", "kind: automatic9999"))
    try:
        assert state.routes.reload() is False
        status = httpx.get(env.url + "/v1/routes", headers=env.headers(env.keys.operator_admin)).json()[
            "status"
        ]
        assert "routes.yaml:" in status["last_error"] and "routes.sd.kind" in status["last_error"]
        resp = env.post("/v1/generate/sd", json={"prompt": "a fox"})
        assert resp.status_code == 200  # the last good table still serves
    finally:
        env.routes_path.write_text(good)
        assert state.routes.reload()


# ---- blobs --------------------------------------------------------------------------------


@pytest.mark.db
def test_blob_url_access_rules(env: ProxyEnv) -> None:
    """Served from the data dir on SQLite, from the shared database on PostgreSQL."""
    from gateway.blobs import DbBlobStore, DirBlobStore

    sqlite = env.gw.settings.resolved_database_url.startswith("sqlite")
    assert isinstance(env.gw.proxy.blobs, DirBlobStore if sqlite else DbBlobStore)
    resp = env.post("/v1/generate/demo", json={"prompt": "a red kite", "response_format": "url"})
    assert resp.status_code == 200, resp.text
    image = resp.json()["images"][0]
    url = image["url"]
    assert "b64_json" not in image and image["expires_at"] > 0
    signed = httpx.get(url)
    assert signed.status_code == 200
    bare = url.split("?")[0]
    assert httpx.get(bare).status_code == 401  # no key, no signature
    assert httpx.get(bare, headers=env.headers()).content == signed.content  # the tenant that made it
    assert httpx.get(bare, headers=env.headers(env.keys.globex)).status_code == 404  # another tenant
    assert httpx.get(bare, headers=env.headers(env.keys.operator_admin)).status_code == 200
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    assert httpx.get(tampered).status_code == 401
    other_blob = bare[:-1] + ("0" if bare[-1] != "0" else "1") + "?" + url.split("?")[1]
    assert httpx.get(other_blob).status_code == 401  # the signature binds the blob id
    stored = env.record(image["audit_index"])
    import hashlib

    assert stored["outputs"][0]["sha256"] == hashlib.sha256(signed.content).hexdigest()


def test_openai_surface_refuses_streaming(env: ProxyEnv) -> None:
    resp = env.post("/v1/images/generations", json={"prompt": "x", "model": "demo", "stream": True})
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and "stream" in err["message"]
    long = env.post("/v1/images/generations", json={"prompt": "x" * 25_000, "model": "demo"})
    assert long.status_code == 422 and long.json()["error"]["type"] == "invalid_request_error"
    assert env.upstream.count() == 0


def test_malformed_requests_are_4xx_never_500(env: ProxyEnv, coffee: np.ndarray) -> None:
    bad_json = env.post(
        "/v1/generate/demo",
        data={"request": "{not json"},
        files=[("media", ("a.png", png(coffee), "image/png"))],
    )
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "bad_input"
    no_request = env.post("/v1/generate/demo", files=[("media", ("a.png", png(coffee), "image/png"))])
    assert no_request.status_code == 422
    not_image = env.post(
        "/v1/generate/demo",
        data={"request": json.dumps({"prompt": "x"})},
        files=[("media", ("a.png", b"plain text", "image/png"))],
    )
    assert not_image.status_code in (400, 415)
    no_file = env.post(
        "/v1/images/edits",
        data={"prompt": "x", "model": "demo"},
        files=[("unrelated", ("a.png", png(coffee), "image/png"))],
    )
    assert no_file.status_code == 422 and no_file.json()["error"]["type"] == "invalid_request_error"
    as_json = env.post("/v1/images/edits", json={"prompt": "x", "model": "demo"})
    assert as_json.status_code == 415
    assert (
        env.post(
            "/v1/images/generations", content=b"{oops", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    assert env.upstream.count() == 0


def test_openapi_documents_the_proxy_bodies(env: ProxyEnv) -> None:
    paths = httpx.get(env.url + "/openapi.json").json()["paths"]
    generate = paths["/v1/generate/{route}"]["post"]["requestBody"]["content"]
    assert "prompt" in generate["application/json"]["schema"]["properties"]
    assert "media" in generate["multipart/form-data"]["schema"]["properties"]
    edits = paths["/v1/images/edits"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"image", "mask", "prompt", "model"} <= set(edits["properties"])
    assert (
        "prompt"
        in paths["/v1/images/generations"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "properties"
        ]
    )
    assert "/v1/routes" in paths and "/v1/blobs/{blob_id}" in paths
