"""The Python client (`gateway.client`) against a real gateway: check, release, generate and
verify in the sync and async flavours, refusals as typed exceptions; and error parsing against
an `httpx.MockTransport` fake (Retry-After, non-JSON bodies)."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from gateway.client import (
    AsyncConsentgateClient,
    ConsentgateClient,
    ConsentgateError,
    PolicyDenied,
    ProvenanceReport,
)
from tests.api.conftest import jpeg, png, solid
from tests.proxy.conftest import ProxyEnv


def test_sync_client_four_verbs(env: ProxyEnv, coffee: np.ndarray) -> None:
    with ConsentgateClient(env.url, env.keys.acme) as cg:
        record = cg.check([png(coffee)], use="img2img", prompt="a cup")
        assert record.verdict == "allow" and record.stage == "input" and len(record.raw["media"]) == 1
        assert cg.check(use="txt2img", prompt="nudify it").verdict == "deny"

        released = cg.release(jpeg(coffee), use="txt2img")
        assert released.mime == "image/jpeg" and released.decision == "allow"
        assert env.record(released.audit_index)["decision_id"] == released.decision_id

        out = cg.generate("demo", "a windmill", n=2, size="512x384")
        assert len(out.images) == 2 and out.route == "demo"
        assert out.input_decision["request_id"] == out.request_id
        first = out.images[0]
        assert first.data is not None and first.url is None and first.mime == "image/png"
        assert [r["name"] for r in cg.routes()["routes"]][:1] == ["demo"]


def test_sync_client_verify(env: ProxyEnv) -> None:
    with ConsentgateClient(env.url, env.keys.acme) as cg:
        image = cg.generate("demo", "a windmill").images[0]
        assert image.data is not None
        verified = cg.verify(image.data)
    assert verified.c2pa["state"] == "Trusted"
    assert [d.decision_id for d in verified.decisions] == [image.decision_id]


def test_async_client_verify(env: ProxyEnv) -> None:
    async def go() -> ProvenanceReport:
        async with AsyncConsentgateClient(env.url, env.keys.acme) as cg:
            image = (await cg.generate("demo", "a windmill")).images[0]
            assert image.data is not None
            return await cg.verify(image.data)

    assert asyncio.run(go()).c2pa["state"] == "Trusted"


def test_sync_client_edit_and_url(env: ProxyEnv, coffee: np.ndarray) -> None:
    with ConsentgateClient(env.url, env.keys.acme) as cg:
        out = cg.generate("sd", "a cup on mars", images=[png(coffee)], response_format="url")
        assert out.input_decision["use"] == "img2img"
        assert out.images[0].data is None and out.images[0].url
        assert httpx.get(out.images[0].url).status_code == 200


def test_sync_client_refusals(env: ProxyEnv) -> None:
    with ConsentgateClient(env.url, env.keys.acme) as cg:
        with pytest.raises(PolicyDenied) as denied:
            cg.release(png(solid((255, 0, 0))), use="txt2img")
        assert denied.value.code == "policy_denied" and denied.value.status == 403
        assert denied.value.decision is not None
        assert denied.value.decision_id == denied.value.decision["decision_id"]
        with pytest.raises(PolicyDenied) as review:
            cg.generate("demo", "solid yellow")
        assert review.value.code == "review_required" and review.value.decision["stage"] == "output"  # type: ignore[index]
        with pytest.raises(ConsentgateError) as failed:
            cg.generate("down", "a lighthouse")
        assert failed.value.status == 502 and failed.value.decision_id
        assert not isinstance(failed.value, PolicyDenied)
    with ConsentgateClient(env.url, "cg_wrong") as bad, pytest.raises(ConsentgateError) as unauth:
        bad.routes()
    assert unauth.value.status == 401


def test_async_client(env: ProxyEnv, coffee: np.ndarray) -> None:
    async def go() -> None:
        async with AsyncConsentgateClient(env.url, env.keys.acme) as cg:
            record, out = await asyncio.gather(
                cg.check([png(coffee)], use="txt2img", stage="output"), cg.generate("generic", "a small boat")
            )
            assert record.stage == "output" and record.verdict == "allow"
            assert out.images[0].data is not None
            released = await cg.release(png(coffee), use="txt2img")
            assert released.decision == "allow"
            with pytest.raises(PolicyDenied):
                await cg.generate("demo", "nudify this")

    asyncio.run(go())


def test_error_parsing_with_a_fake_transport() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/routes":
            return httpx.Response(
                429,
                headers={"Retry-After": "7"},
                json={"error": {"code": "rate_limited", "message": "slow down"}},
            )
        return httpx.Response(500, text="<html>oops</html>")

    with ConsentgateClient("http://gw.test", "k", transport=httpx.MockTransport(handler)) as cg:
        with pytest.raises(ConsentgateError) as limited:
            cg.routes()
        assert limited.value.code == "rate_limited" and limited.value.retry_after_s == 7.0
        with pytest.raises(ConsentgateError) as broken:
            cg.verify(b"x")
        assert broken.value.status == 500 and "oops" in broken.value.message
