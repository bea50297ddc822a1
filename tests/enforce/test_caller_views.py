"""Issue #15.6: callers see only what is theirs. A tenant's auditor gets the caller view of its
decisions (before the fix: the full record — subject ids and similarities of faces its tenant holds
no grant for, hash-list subject ids); generators never see a similarity or a hash distance, not even
for their own grants (a number would let a client tune an image until it passes). The operator's
auditor still sees everything."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.pipeline.record import caller_view
from tests.support.gateway import Keys, app_client, auth, make_settings, png, verify_audit


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Iterator[tuple[TestClient, Keys, str]]:
    tmp = tmp_path_factory.mktemp("gw")
    with app_client(make_settings(tmp), tmp) as (client, keys):
        sid = client.post("/v1/subjects", headers=auth(keys.registrar), json={"display_name": "E C"}).json()["id"]
        made = client.post(f"/v1/subjects/{sid}/faces", headers=auth(keys.registrar), data={"notice_version": "n1"},
                           files=[("media", ("a.png", png(astronaut), "image/png"))])
        assert made.status_code == 201, made.text
        yield client, keys, sid
        verify_audit(client)


def check(client: TestClient, key: str, image: bytes) -> dict[str, Any]:
    resp = client.post("/v1/check", headers=auth(key), data={"request": json.dumps({"stage": "output",
                                                                                     "use": "txt2img"})},
                       files=[("media", ("a.png", image, "image/png"))])
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_a_tenant_auditor_gets_the_caller_view(gateway: tuple[TestClient, Keys, str], astronaut: np.ndarray) -> None:
    client, keys, sid = gateway
    record = check(client, keys.generator, png(astronaut))
    assert record["findings"]["faces"][0]["consent"]["state"] == "no_grant"
    assert record["findings"]["faces"][0]["matches"] == []
    index = record["audit"]["index"]
    tenant = client.get(f"/v1/audit/entries/{index}", headers=auth(keys.tenant_auditor)).json()["record"]
    assert tenant["findings"]["faces"][0]["matches"] == []  # no subject id, no similarity
    assert sid not in json.dumps(tenant)
    listed = client.get("/v1/audit/entries", headers=auth(keys.tenant_auditor)).json()["entries"]
    assert listed and sid not in json.dumps(listed)
    operator = client.get(f"/v1/audit/entries/{index}", headers=auth(keys.auditor)).json()["record"]
    assert operator["findings"]["faces"][0]["matches"][0]["subject_id"] == sid
    assert operator["findings"]["faces"][0]["matches"][0]["similarity"] > 0.9


def test_a_grantee_sees_who_but_never_a_number(gateway: tuple[TestClient, Keys, str], astronaut: np.ndarray) -> None:
    client, keys, sid = gateway
    grant = client.post(f"/v1/subjects/{sid}/grants", headers=auth(keys.registrar),
                        json={"grantee_tenant": "acme", "uses": ["txt2img"]})
    assert grant.status_code == 201, grant.text
    try:
        record = check(client, keys.generator, png(astronaut))
        assert record["decision"] == "allow"
        assert record["findings"]["faces"][0]["matches"] == [{"subject_id": sid}]
        assert "similarity" not in json.dumps(record["findings"])
    finally:
        client.delete(f"/v1/grants/{grant.json()['id']}", headers=auth(keys.registrar))


def test_hash_distances_and_concept_similarities_are_hidden_from_callers() -> None:
    record = {
        "findings": {"hashes": [{"media_index": 0, "subject_id": "s1", "distance": 12}],
                     "prompt": [{"concept": "c1", "similarity": 0.71}],
                     "shadow": [{"rule": "prompt.concept.c1", "label": "c1", "score": 0.7, "outcome": "deny"}]},
        "reasons": [{"rule": "hash_list", "outcome": "deny", "detail": "media 0 is within 12 bits of a listed hash"},
                    {"rule": "prompt.concept.c1", "outcome": "deny",
                     "detail": "prompt similarity 0.712 >= threshold 0.6"}],
    }
    view = caller_view(record, tenant="acme", is_operator=False)
    assert view["findings"]["hashes"] == [{"media_index": 0, "subject_id": None}]
    assert view["findings"]["prompt"] == [{"concept": "c1"}]
    assert "score" not in view["findings"]["shadow"][0]
    assert [r["detail"] for r in view["reasons"]] == ["media 0 is near a listed hash",
                                                      "prompt similarity >= threshold 0.6"]
    assert caller_view(record, tenant="operator", is_operator=True) is record
