"""Roles and keys: 401 for missing/unknown keys, 403 for the wrong role; keys stored hashed."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from gateway.apikeys import ApiKeyRow
from tests.api.conftest import Keys, auth, check


def test_missing_and_unknown_keys_are_401(client: TestClient) -> None:
    assert client.post("/v1/check", data={"request": '{"use": "txt2img"}'}).status_code == 401
    assert check(client, "cg_000000000000_nope", {"stage": "input", "use": "txt2img"}).status_code == 401
    assert check(client, "garbage", {"stage": "input", "use": "txt2img"}).status_code == 401


def test_wrong_roles_are_403(client: TestClient, keys: Keys) -> None:
    assert check(client, keys.auditor, {"stage": "input", "use": "txt2img"}).status_code == 403
    assert check(client, keys.registrar, {"stage": "input", "use": "txt2img"}).status_code == 403
    assert client.get("/v1/apikeys", headers=auth(keys.generator)).status_code == 403
    assert check(client, keys.admin, {"stage": "input", "use": "txt2img"}).status_code == 200


def test_admin_manages_keys_and_revocation_bites(client: TestClient, keys: Keys) -> None:
    created = client.post("/v1/apikeys", headers=auth(keys.admin), json={"tenant": "acme", "role": "generator"})
    assert created.status_code == 201
    key = created.json()["key"]
    assert check(client, key, {"stage": "input", "use": "txt2img"}).status_code == 200
    listed = client.get("/v1/apikeys", headers=auth(keys.admin)).json()["keys"]
    assert all("key" not in k and "secret" not in str(k) for k in listed)
    assert client.delete(f"/v1/apikeys/{created.json()['id']}", headers=auth(keys.admin)).status_code == 200
    assert check(client, key, {"stage": "input", "use": "txt2img"}).status_code == 401


def test_operator_only_roles(client: TestClient, keys: Keys) -> None:
    resp = client.post("/v1/apikeys", headers=auth(keys.admin), json={"tenant": "acme", "role": "registrar"})
    assert resp.status_code == 422


def test_keys_are_stored_hashed(client: TestClient, keys: Keys) -> None:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    with Session(gw.engine) as session:
        rows = session.exec(select(ApiKeyRow)).all()
    stored = " ".join(r.secret_sha256 for r in rows)
    for key in (keys.generator, keys.admin):
        assert key.split("_", 2)[2] not in stored


def test_health_ready_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    text = client.get("/metrics").text
    assert "consentgate_requests_total" in text and "consentgate_model_seconds" in text
    assert client.get("/openapi.json").json()["paths"]["/v1/check"]


def test_rate_limit_per_key_with_retry_after(client: TestClient, keys: Keys) -> None:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    key = gw.apikeys.create("acme", "generator")[1]
    old = gw.settings
    object.__setattr__(gw, "settings", old.with_overrides(rate_limit_per_s=0.5, rate_limit_burst=2))
    try:
        codes = [check(client, key, {"stage": "input", "use": "txt2img"}).status_code for _ in range(4)]
        limited = check(client, key, {"stage": "input", "use": "txt2img"})
    finally:
        object.__setattr__(gw, "settings", old)
    assert codes[:2] == [200, 200] and 429 in codes
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    # other keys unaffected
    assert check(client, keys.generator, {"stage": "input", "use": "txt2img"}).status_code == 200
