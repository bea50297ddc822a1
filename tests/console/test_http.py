"""The console over HTTP: served at /console (and / leads there) with a strict CSP and no inline
script; an API key is exchanged for an HttpOnly, SameSite=Strict session cookie (Secure, and
`__Host-` prefixed, behind TLS) that then authenticates the /v1 API, with CSRF on every change;
sign-in refuses other sites, forms and generator keys; logout ends the session."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.console.router import FILES
from tests.support.gateway import Keys, app_client, make_settings


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Keys]]:
    tmp = tmp_path_factory.mktemp("console")
    with app_client(make_settings(tmp), tmp) as made:
        yield made


@pytest.fixture
def tc(gateway: tuple[TestClient, Keys]) -> Iterator[TestClient]:
    client = gateway[0]
    client.cookies.clear()
    yield client
    client.cookies.clear()


def sign_in(tc: TestClient, key: str, **headers: str) -> dict[str, str]:
    r = tc.post("/console/session", json={"api_key": key}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


class Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.sources: list[str] = []
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.handlers += [k for k in names if k.startswith("on") or k == "style"]
        if tag == "script":
            self._in_script = "src" not in names
            if "src" in names:
                self.sources.append(names["src"] or "")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False


def test_root_leads_to_the_console_and_it_is_served_with_a_strict_csp(tc: TestClient) -> None:
    r = tc.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "console"  # relative: works under a path prefix
    page = tc.get("/")
    assert page.status_code == 200 and page.url.path == "/console"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    parsed = Scripts()
    parsed.feed(page.text)
    assert parsed.inline == [] and parsed.handlers == [] and parsed.sources == ["console/static/console.js"]
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page.text)  # nothing from another origin


def test_every_asset_is_local_and_served(tc: TestClient) -> None:
    assert {"console.js", "verify.js", "console.css", "vendor/noble-ed25519.js"} <= set(FILES)
    for name in FILES:
        r = tc.get(f"/console/static/{name}")
        assert r.status_code == 200 and "content-security-policy" in r.headers, name
        if name.endswith(".js"):
            assert r.headers["content-type"].startswith("text/javascript")
            if name.startswith("vendor/"):
                continue  # checked against its published digest in test_vendor.py
            imports = re.findall(r"""^import .* from ['"]([^'"]+)['"]""", r.text, re.M)
            assert all(i.startswith("./") for i in imports), (name, imports)  # no network fetch at run time
            assert "fetch('http" not in r.text and "innerHTML" not in r.text, name
    assert tc.get("/console/static/../router.py").status_code == 404
    assert tc.get("/console/static/nope.js").status_code == 404


def test_sign_in_sets_a_safe_cookie_and_never_returns_the_key(
        tc: TestClient, gateway: tuple[TestClient, Keys]) -> None:
    keys = gateway[1]
    r = tc.post("/console/session", json={"api_key": keys.auditor})
    assert r.status_code == 200 and keys.auditor not in r.text
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("cg_session=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie and keys.auditor not in cookie
    body = r.json()
    assert body["role"] == "auditor" and body["tenant"] == "operator" and body["operator"] is True
    assert len(body["csrf_token"]) >= 24 and r.headers["cache-control"] == "no-store"
    who = tc.get("/console/session").json()
    assert who["csrf_token"] == body["csrf_token"] and who["role"] == "auditor"


def test_sign_in_through_a_proxy_that_drops_the_port(tc: TestClient, gateway: tuple[TestClient, Keys]) -> None:
    r = tc.post("/console/session", json={"api_key": gateway[1].auditor},
                headers={"Origin": "https://testserver:8443", "X-Forwarded-Proto": "https"})
    assert r.status_code == 200 and r.headers["set-cookie"].startswith("__Host-cg_session=")


def test_behind_tls_the_cookie_is_secure_and_host_prefixed(
        tc: TestClient, gateway: tuple[TestClient, Keys]) -> None:
    r = tc.post("/console/session", json={"api_key": gateway[1].admin}, headers={"X-Forwarded-Proto": "https"})
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-cg_session=") and "Secure" in cookie and "Path=/" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Domain" not in cookie


@pytest.mark.parametrize("case", ["generator", "unknown", "form", "cross_site", "null_origin", "not_json"])
def test_sign_in_refusals(tc: TestClient, gateway: tuple[TestClient, Keys], case: str) -> None:
    keys = gateway[1]
    if case == "generator":
        r = tc.post("/console/session", json={"api_key": keys.generator})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "role_not_allowed")
    elif case == "unknown":
        r = tc.post("/console/session", json={"api_key": "cg_0123456789ab_nope"})
        assert r.status_code == 401
    elif case == "form":
        r = tc.post("/console/session", data={"api_key": keys.admin})
        assert r.status_code == 415
    elif case == "cross_site":
        r = tc.post("/console/session", json={"api_key": keys.admin}, headers={"Origin": "https://evil.example"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "cross_origin")
    elif case == "null_origin":
        r = tc.post("/console/session", json={"api_key": keys.admin}, headers={"Origin": "null"})
        assert r.status_code == 403
    else:
        r = tc.post("/console/session", content=b"{", headers={"Content-Type": "application/json"})
        assert r.status_code == 400
    assert "set-cookie" not in r.headers
    assert tc.get("/console/session").status_code == 401


def test_the_session_authenticates_the_api_and_changes_need_csrf(
        tc: TestClient, gateway: tuple[TestClient, Keys]) -> None:
    session = sign_in(tc, gateway[1].registrar)
    assert tc.get("/v1/subjects").status_code == 200
    refused = tc.post("/v1/subjects", json={"display_name": "Ada"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "csrf_failed")
    wrong = tc.post("/v1/subjects", json={"display_name": "Ada"}, headers={"X-CSRF-Token": "x" * 32})
    assert wrong.status_code == 403
    made = tc.post("/v1/subjects", json={"display_name": "Ada"}, headers={"X-CSRF-Token": session["csrf_token"]})
    assert made.status_code == 201
    assert tc.get("/v1/audit/checkpoint").status_code == 403  # a registrar session is still a registrar


def test_logout_ends_the_session(tc: TestClient, gateway: tuple[TestClient, Keys]) -> None:
    session = sign_in(tc, gateway[1].auditor)
    cookie = tc.cookies.get("cg_session")
    assert cookie and tc.get("/v1/audit/entries").status_code == 200
    assert tc.delete("/console/session").status_code == 403  # CSRF on sign-out too
    out = tc.delete("/console/session", headers={"X-CSRF-Token": session["csrf_token"]})
    assert out.status_code == 200 and "cg_session=" in out.headers["set-cookie"]
    tc.cookies.set("cg_session", cookie)  # replaying the old cookie does not work
    r = tc.get("/v1/audit/entries")
    assert (r.status_code, r.json()["error"]["code"]) == (401, "session_expired")


def test_a_bearer_key_still_wins_over_a_cookie(tc: TestClient, gateway: tuple[TestClient, Keys]) -> None:
    sign_in(tc, gateway[1].admin)
    r = tc.get("/v1/apikeys", headers={"Authorization": f"Bearer {gateway[1].auditor}"})
    assert r.status_code == 403  # the header's auditor key, not the admin session


def test_vkey_is_served_for_in_browser_verification(tc: TestClient, gateway: tuple[TestClient, Keys]) -> None:
    gw = gateway[0].app.state.gateway  # type: ignore[attr-defined]
    doc = tc.get("/console/vkey").json()
    assert doc["vkey"] == gw.audit.signer.vkey and doc["vkey"].startswith(doc["origin"] + "+")


def test_notices_come_from_the_policy_directory(tc: TestClient, tmp_path: Path) -> None:
    from gateway.console.router import _notices

    assert tc.get("/console/notices").json() == {"notices": []}  # none configured: enrolment cannot name one
    shipped = _notices(Path(__file__).resolve().parents[2] / "policies" / "notices")
    assert [n["version"] for n in shipped] == ["likeness-2026-1"]
    assert shipped[0]["title"] == "Your likeness and this gateway" and "erase" in shipped[0]["text"]
    (tmp_path / "bad name!.md").write_text("# x\ny")
    (tmp_path / "v2.md").write_text("# Title\n\nBody")
    assert [(n["version"], n["title"], n["text"]) for n in _notices(tmp_path)] == [("v2", "Title", "Body")]


def test_a_subject_token_session_opens_only_that_persons_pages(
        tc: TestClient, gateway: tuple[TestClient, Keys]) -> None:
    import sqlalchemy as sa

    from gateway.registry.models import RegistryAccessToken

    keys = gateway[1]
    reg = {"Authorization": f"Bearer {keys.registrar}"}
    sid = tc.post("/v1/subjects", json={"display_name": "Grace"}, headers=reg).json()["id"]
    other = tc.post("/v1/subjects", json={"display_name": "Ada"}, headers=reg).json()["id"]
    issued = tc.post(f"/v1/subjects/{sid}/access-tokens", json={"expires_in": 600}, headers=reg).json()
    r = tc.post("/console/session", json={"subject_token": issued["token"]})
    assert r.status_code == 200 and issued["token"] not in r.text
    assert (r.json()["role"], r.json()["subject_id"]) == ("subject", sid)
    assert tc.get(f"/v1/subjects/{sid}/grants").status_code == 200
    assert tc.get(f"/v1/subjects/{other}/grants").status_code == 404
    refused = tc.get("/v1/audit/entries")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "subject_session")
    assert tc.post(f"/v1/subjects/{sid}/erasure-requests").status_code == 403  # CSRF applies to them too
    gw = gateway[0].app.state.gateway  # type: ignore[attr-defined]
    with gw.engine.begin() as conn:  # the token expires: its session ends with it
        table = RegistryAccessToken.__table__  # type: ignore[attr-defined]
        conn.execute(sa.update(table).where(table.c.id == issued["token_id"]).values(
            expires_at=_past()))
    gone = tc.get(f"/v1/subjects/{sid}/grants")
    assert (gone.status_code, gone.json()["error"]["code"]) == (401, "session_expired")


def _past() -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) - timedelta(minutes=1)


def test_entries_newest_first_with_cursor(tc: TestClient, gateway: tuple[TestClient, Keys]) -> None:
    keys = gateway[1]
    for prompt in ("a", "b", "c"):
        r = tc.post("/v1/check", headers={"Authorization": f"Bearer {keys.generator}"},
                    data={"request": f'{{"stage": "input", "use": "txt2img", "prompt": "{prompt}"}}'})
        assert r.status_code == 200
    auditor = {"Authorization": f"Bearer {keys.auditor}"}
    oldest = tc.get("/v1/audit/entries", params={"limit": 1000}, headers=auditor).json()["entries"]
    every = [e["index"] for e in oldest]
    assert every == sorted(every) and len(every) >= 3
    first = tc.get("/v1/audit/entries", params={"order": "newest", "limit": 2}, headers=auditor).json()
    second = tc.get("/v1/audit/entries", params={"order": "newest", "limit": 2, "cursor": first["next_cursor"]},
                    headers=auditor).json()
    assert [e["index"] for e in first["entries"] + second["entries"]] == sorted(every, reverse=True)[:4]
    assert tc.get("/v1/audit/entries", params={"order": "sideways"}, headers=auditor).status_code in (400, 422)


def test_entries_filtered_by_model(tc: TestClient, gateway: tuple[TestClient, Keys]) -> None:
    from tests.support.gateway import png, solid

    keys = gateway[1]
    r = tc.post("/v1/check", headers={"Authorization": f"Bearer {keys.generator}"},
                data={"request": '{"stage": "output", "use": "txt2img"}'},
                files=[("media", ("m.png", png(solid((10, 120, 40))), "image/png"))])
    made = r.json()
    auditor = {"Authorization": f"Bearer {keys.auditor}"}
    by_fake = tc.get("/v1/audit/entries", params={"model": "fake", "order": "newest", "limit": 1},
                     headers=auditor).json()["entries"]
    assert [e["record"]["decision_id"] for e in by_fake] == [made["decision_id"]]
    assert tc.get("/v1/audit/entries", params={"model": "no-such-model"}, headers=auditor).json() == {
        "entries": [], "next_cursor": None}
    prompt_only = tc.get("/v1/audit/entries", params={"model": "fake", "limit": 1000}, headers=auditor).json()
    assert all(any(f.get("model") == "fake" or f.get("adapter") == "fake" for f in e["record"]["findings"]["nsfw"])
               for e in prompt_only["entries"])
