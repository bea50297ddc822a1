"""Issue #15.11: blob links. Parameters with non-ASCII or Unicode digits are a 400 (before the fix:
500 — `"²".isdigit()` is true and `int("²")` raises, and `hmac.compare_digest` raises on non-ASCII
text), and signed links are built only from the configured public URL, never from the Host header
(a client could otherwise make the gateway hand out links to a host of its choosing)."""

from __future__ import annotations

import httpx
import pytest

from tests.proxy.conftest import ProxyEnv


def _url(env: ProxyEnv) -> str:
    resp = env.post("/v1/generate/demo", json={"prompt": "a red kite", "response_format": "url"})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["images"][0]["url"])


@pytest.mark.parametrize("query", [
    "expires=%C2%B2&sig=00",            # superscript two: isdigit() but not int()
    "expires=%D9%A1%D9%A2%D9%A3&sig=00",  # Arabic-Indic digits
    "expires=99999999999&sig=%C3%A9",    # a non-ASCII signature
    "expires=1%C2%A0&sig=00",            # a no-break space
])
def test_non_ascii_link_parameters_are_400(env: ProxyEnv, query: str) -> None:
    bare = _url(env).split("?")[0]
    resp = httpx.get(f"{bare}?{query}")
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "bad_link"


def test_a_non_ascii_blob_id_is_404_not_500(env: ProxyEnv) -> None:
    resp = httpx.get(env.url + "/v1/blobs/%D9%A1" + "0" * 31, headers=env.headers())
    assert resp.status_code == 404


def test_links_never_come_from_the_host_header(env: ProxyEnv) -> None:
    resp = env.post("/v1/generate/demo", json={"prompt": "a red kite", "response_format": "url"},
                    headers={"Host": "evil.example"})
    assert resp.status_code == 200, resp.text
    url = resp.json()["images"][0]["url"]
    assert "evil.example" not in url and url.startswith(env.url + "/v1/blobs/")
    configured = env.gw.settings.extra.pop("public_url")
    try:
        relative = env.post("/v1/generate/demo", json={"prompt": "a kite", "response_format": "url"},
                            headers={"Host": "evil.example"}).json()["images"][0]["url"]
        assert relative.startswith("/v1/blobs/")  # no public URL configured: a relative link
    finally:
        env.gw.settings.extra["public_url"] = configured
