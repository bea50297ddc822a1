"""The official `openai` package → gateway (uvicorn on loopback) → reference upstream (a real
local server) → a marked, C2PA-signed image; and the consent paths: a protected name in the
prompt, an enrolled face in a reference image without a grant, an enrolled face coming back
from the upstream without a grant. Where the input check denies, the upstream saw no call."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import openai
import pytest
from PIL import Image

from gateway.provenance import read_manifest
from tests.api.conftest import png
from tests.proxy.conftest import ProxyEnv


def client(env: ProxyEnv, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=env.url + "/v1", api_key=key or env.keys.acme, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def subjects(proxy_env: ProxyEnv, astronaut: np.ndarray) -> Iterator[dict[str, Any]]:
    """Eileen Collins (the astronaut image) enrolled, with a txt2img grant to tenant acme only;
    a protected public figure known by name."""
    reg = proxy_env.gw.registry
    collins = reg.create_subject("Eileen Collins", ["Commander Collins"], protected=False, created_by="test")
    reg.enroll(collins.id, [np.array(astronaut)], notice_version="v1", enrolled_by="test")
    grant = reg.grant(collins.id, "acme", uses=["txt2img"], created_by="test")
    famous = reg.create_subject("Ada Quillfeather", ["Lady Quillfeather"], protected=True, created_by="test")
    yield {"collins": collins.id, "grant": grant.id, "famous": famous.id}


def images(result: Any) -> list[Any]:
    assert result.data is not None
    return list(result.data)


def extra(result: Any) -> dict[str, Any]:
    assert result.model_extra is not None
    return dict(result.model_extra["consentgate"])


def decoded(b64_json: str | None) -> tuple[bytes, np.ndarray]:
    assert b64_json
    data = base64.b64decode(b64_json)
    with Image.open(io.BytesIO(data)) as img:
        return data, np.asarray(img.convert("RGB"))


def test_openai_generate_returns_signed_marked_image(env: ProxyEnv) -> None:
    before = env.audit_size()
    result = client(env).images.generate(
        model="demo", prompt="a lighthouse at dusk", response_format="b64_json"
    )
    assert len(images(result)) == 1
    data, rgb = decoded(images(result)[0].b64_json)
    gw = env.gw
    report = read_manifest(data, "image/png", gw.provenance.trust_anchors_pem)
    assert report.state == "Trusted", report.validation_errors
    found = gw.provenance.inspect(data, "image/png", rgb)
    info = extra(result)
    output_id = info["images"][0]["decision_id"]
    assert found["watermark"]["found"] is True
    assert found["watermark"]["decision_ids"] == [output_id]
    assert report.decision is not None and report.decision["decision_id"] == output_id
    assert report.software_agent is not None and "demo-upstream" in str(report.software_agent)
    # input and output decisions: two audit entries, linked by one request_id
    assert env.audit_size() == before + 2
    entries = [env.record(i) for i in range(before, before + 2)]
    assert {e["stage"] for e in entries} == {"input", "output"}
    assert {e["request_id"] for e in entries} == {info["request_id"]}
    assert env.upstream.count("generations") == 1


def test_openai_generate_url_is_served_by_the_gateway(env: ProxyEnv) -> None:
    import httpx

    result = client(env).images.generate(model="demo", prompt="a quiet harbour", response_format="url")
    url = images(result)[0].url
    assert url and url.startswith(env.url + "/v1/blobs/")
    fetched = httpx.get(url)  # a signed link needs no key
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    report = read_manifest(fetched.content, "image/png", env.gw.provenance.trust_anchors_pem)
    assert report.state == "Trusted"


def test_protected_name_in_prompt_is_403_and_upstream_never_called(
    env: ProxyEnv, subjects: dict[str, Any]
) -> None:
    before = env.audit_size()
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(env).images.generate(model="demo", prompt="a portrait of Lady Quillfeather on a horse")
    err = caught.value
    assert err.code == "policy_denied"
    body = err.body
    assert isinstance(body, dict) and body["type"] == "policy_denied" and body["stage"] == "input"
    assert env.upstream.count() == 0
    assert env.audit_size() == before + 1
    record = env.record(before)
    assert record["decision_id"] == body["decision_id"] and record["decision"] == "deny"
    assert record["stage"] == "input"


def test_edit_with_enrolled_face_without_grant_is_403_before_upstream(
    env: ProxyEnv, subjects: dict[str, Any], astronaut: np.ndarray
) -> None:
    """acme's grant covers txt2img only; an edit is checked as img2img."""
    before = env.audit_size()
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(env).images.edit(
            model="demo", image=("ref.png", png(astronaut), "image/png"), prompt="put her on the moon"
        )
    assert caught.value.code == "policy_denied"
    assert env.upstream.count() == 0
    record = env.record(before)
    assert record["stage"] == "input" and record["use"] == "img2img"
    assert [f["consent"]["state"] for f in record["findings"]["faces"]] == ["no_grant"]


def test_edit_without_faces_reaches_upstream_and_comes_back_signed(env: ProxyEnv, coffee: np.ndarray) -> None:
    result = client(env).images.edit(
        model="demo", image=("cup.png", png(coffee), "image/png"), prompt="a cup on the moon"
    )
    data, _ = decoded(images(result)[0].b64_json)
    assert read_manifest(data, "image/png", env.gw.provenance.trust_anchors_pem).state == "Trusted"
    assert env.upstream.count("edits") == 1
    assert env.upstream.calls[0].images == 1


def test_upstream_face_without_grant_is_403_and_nothing_released(
    env: ProxyEnv, subjects: dict[str, Any]
) -> None:
    """globex holds no grant from the astronaut; the upstream renders her anyway."""
    before = env.audit_size()
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(env, env.keys.globex).images.generate(model="demo", prompt="an astronaut in orbit")
    body = caught.value.body
    assert isinstance(body, dict) and body["stage"] == "output"
    assert env.upstream.count("generations") == 1
    assert env.audit_size() == before + 2
    inp, out = env.record(before), env.record(before + 1)
    assert inp["decision"] == "allow" and out["decision"] == "deny"
    assert out["outputs"] == [] and out["decision_id"] == body["decision_id"]
    assert inp["request_id"] == out["request_id"] == body["request_id"]
    assert [f["consent"]["state"] for f in out["findings"]["faces"]] == ["no_grant"]


def test_upstream_face_with_grant_is_released(env: ProxyEnv, subjects: dict[str, Any]) -> None:
    result = client(env).images.generate(model="demo", prompt="an astronaut in orbit")
    data, _ = decoded(images(result)[0].b64_json)
    report = read_manifest(data, "image/png", env.gw.provenance.trust_anchors_pem)
    assert report.state == "Trusted"
    index = extra(result)["images"][0]["audit_index"]
    out = env.record(index)
    assert out["grant_ids"] == [subjects["grant"]]
    assert [f["consent"]["state"] for f in out["findings"]["faces"]] == ["granted"]


def test_unsafe_render_is_403_review_too(env: ProxyEnv) -> None:
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client(env).images.generate(model="demo", prompt="solid red")
    assert denied.value.code == "policy_denied"
    with pytest.raises(openai.PermissionDeniedError) as review:
        client(env).images.generate(model="demo", prompt="solid yellow")
    assert review.value.code == "review_required"
    assert env.upstream.count() == 2


def test_upstream_down_is_502_with_audit_entry(env: ProxyEnv) -> None:
    before = env.audit_size()
    with pytest.raises(openai.APIStatusError) as caught:
        client(env).images.generate(model="down", prompt="a lighthouse")
    err = caught.value
    assert err.status_code == 502 and err.code == "upstream_error"
    body = err.body
    assert isinstance(body, dict)
    assert env.audit_size() == before + 2
    inp, failure = env.record(before), env.record(before + 1)
    assert inp["decision"] == "allow"
    assert failure["decision"] == "deny" and failure["decision_id"] == body["decision_id"]
    assert failure["reasons"][0]["rule"] == "upstream.failed"
    assert failure["request_id"] == inp["request_id"] == body["request_id"]


def test_unknown_model_is_404_openai_shape(env: ProxyEnv) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(env).images.generate(model="no-such-route", prompt="x")
    assert caught.value.code == "route_not_found"
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "invalid_request_error"


def test_bad_key_is_401_openai_shape(env: ProxyEnv) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(env, "cg_not_a_key").images.generate(model="demo", prompt="x")
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "authentication_error"
