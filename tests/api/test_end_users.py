"""Pseudonymous end users (#17.5): an end-user id reaches the log only as a keyed hash under the
tenant's key in the key store; the tenant still finds its end user's decisions by the clear id;
destroying the key forgets them for good while every record and proof stays valid."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import Keys, auth, check

pytestmark = pytest.mark.db  # PostgreSQL too when CONSENTGATE_TEST_DATABASE_URL is set


def test_end_users_are_keyed_hashes_and_can_be_forgotten(client: TestClient, keys: Keys) -> None:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    req = {"stage": "input", "use": "txt2img", "end_user": "alice@example.com"}
    first = check(client, keys.generator, req).json()
    stored = gw.audit.entry(first["audit"]["index"]).record
    assert stored["end_user"].startswith("hk1:") and "alice" not in json.dumps(stored)
    other_tenant = check(client, keys.other_generator, req).json()
    assert gw.audit.entry(other_tenant["audit"]["index"]).record["end_user"] != stored["end_user"]  # per tenant

    def lookup(key: str, **params: str) -> list[str]:
        r = client.get("/v1/audit/entries", headers=auth(key), params=params)
        assert r.status_code == 200, r.text
        return [e["record"]["decision_id"] for e in r.json()["entries"]]

    assert lookup(keys.tenant_auditor, end_user="alice@example.com") == [first["decision_id"]]
    assert lookup(keys.tenant_auditor, end_user="bob@example.com") == []
    assert lookup(keys.auditor, end_user="alice@example.com", tenant="acme") == [first["decision_id"]]
    assert client.get("/v1/audit/entries", headers=auth(keys.auditor),
                      params={"end_user": "alice@example.com"}).status_code == 400  # whose end user?

    r = client.post("/v1/subjects", headers=auth(keys.registrar), json={"display_name": "Grantor"})
    sid = r.json()["id"]
    client.post(f"/v1/subjects/{sid}/grants", headers=auth(keys.registrar),
                json={"grantee_tenant": "acme", "grantee_end_user": "alice@example.com", "uses": ["txt2img"]})
    grant_entry = gw.audit.query(subject=sid, kind="grant")[0][0].record
    assert grant_entry["grant"]["grantee_end_user"] == stored["end_user"]  # the same keyed hash

    assert gw.registry.pseudonyms.forget("acme")
    assert lookup(keys.tenant_auditor, end_user="alice@example.com") == []  # unlinkable now
    assert gw.audit.entry(first["audit"]["index"]).record == stored  # the log is untouched
    later = check(client, keys.generator, req).json()
    fresh = gw.audit.entry(later["audit"]["index"]).record["end_user"]
    assert fresh.startswith("hk1:") and fresh.split(":")[1] != stored["end_user"].split(":")[1]  # a new key
    assert lookup(keys.tenant_auditor, end_user="alice@example.com") == [later["decision_id"]]
