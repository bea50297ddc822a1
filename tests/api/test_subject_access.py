"""The person's own access (#17.3), tested both ways: a subject access token reads its subject's
grants and uses (with proofs, without other people's details), revokes its own grant, exports its
data (never templates) and asks for erasure — and sees nothing of another subject, no decision that
does not involve them, and no other route of the gateway."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from gateway.audit import check_receipt
from tests.api.conftest import Keys, auth, check, jpeg, png

pytestmark = pytest.mark.db  # PostgreSQL too when CONSENTGATE_TEST_DATABASE_URL is set


def subject(client: TestClient, keys: Keys, name: str, image: np.ndarray | None) -> dict[str, str]:
    sid = client.post("/v1/subjects", headers=auth(keys.registrar), json={"display_name": name}).json()["id"]
    if image is not None:
        r = client.post(f"/v1/subjects/{sid}/faces", headers=auth(keys.registrar), data={"notice_version": "n-2"},
                        files=[("media", ("a.png", png(image), "image/png"))])
        assert r.status_code == 201, r.text
    gid = client.post(f"/v1/subjects/{sid}/grants", headers=auth(keys.registrar),
                      json={"grantee_tenant": "acme", "uses": ["txt2img"]}).json()["id"]
    r = client.post(f"/v1/subjects/{sid}/access-tokens", headers=auth(keys.registrar), json={"expires_in": 3600})
    assert r.status_code == 201, r.text
    token = r.json()
    assert token["token"].startswith("cgs_") and token["subject_id"] == sid
    return {"id": sid, "grant": gid, "token": token["token"], "token_id": token["token_id"]}


@pytest.fixture(scope="module")
def people(gateway_client: tuple[TestClient, Keys], astronaut: np.ndarray, grace_hopper: np.ndarray
           ) -> dict[str, dict[str, str]]:
    client, keys = gateway_client
    return {"a": subject(client, keys, "Eileen Collins", astronaut),
            "b": subject(client, keys, "Grace Hopper", grace_hopper)}


def test_a_token_sees_its_subject_only(client: TestClient, keys: Keys, people: dict[str, dict[str, str]],
                                       astronaut: np.ndarray, grace_hopper: np.ndarray, coffee: np.ndarray) -> None:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    a, b = people["a"], people["b"]
    mine = auth(a["token"])
    seen = check(client, keys.generator, {"stage": "output", "use": "txt2img"}, jpeg(astronaut)).json()
    other = check(client, keys.generator, {"stage": "output", "use": "txt2img"}, jpeg(grace_hopper)).json()
    nobody = check(client, keys.generator, {"stage": "output", "use": "txt2img"}, jpeg(coffee)).json()
    gw.audit.publish_checkpoint()

    assert client.get(f"/v1/subjects/{a['id']}", headers=mine).json()["display_name"] == "Eileen Collins"
    grants = client.get(f"/v1/subjects/{a['id']}/grants", headers=mine).json()["grants"]
    assert [g["id"] for g in grants] == [a["grant"]]
    uses = client.get(f"/v1/subjects/{a['id']}/uses", headers=mine).json()["uses"]
    ids = [u["decision_id"] for u in uses]
    assert seen["decision_id"] in ids and other["decision_id"] not in ids and nobody["decision_id"] not in ids
    assert all("record" not in u for u in uses)  # a decision record may name other people
    use = next(u for u in uses if u["decision_id"] == seen["decision_id"])
    assert check_receipt(use["receipt"], gw.audit.signer.vkey).index == use["index"]
    assert client.get(f"/v1/grants/{a['grant']}/uses", headers=mine).status_code == 200

    # Another subject: as if it did not exist.
    for url in (f"/v1/subjects/{b['id']}", f"/v1/subjects/{b['id']}/grants", f"/v1/subjects/{b['id']}/uses",
                f"/v1/subjects/{b['id']}/export", f"/v1/grants/{b['grant']}/uses"):
        assert client.get(url, headers=mine).status_code == 404, url
    assert client.delete(f"/v1/grants/{b['grant']}", headers=mine).status_code == 404
    assert client.post(f"/v1/subjects/{b['id']}/erasure-requests", headers=mine).status_code == 404
    assert client.get(f"/v1/subjects/{b['id']}/grants", headers=auth(keys.registrar)).json()["grants"][0][
        "revoked_at"] is None
    # Nothing else of the gateway: the token is not an API key.
    for method, url in (("get", "/v1/subjects"), ("get", "/v1/audit/entries"), ("get", "/v1/audit/checkpoint"),
                        ("get", f"/v1/audit/receipts/{seen['decision_id']}"), ("get", "/v1/erasure-requests"),
                        ("post", f"/v1/subjects/{a['id']}/access-tokens"), ("delete", f"/v1/subjects/{a['id']}"),
                        ("post", f"/v1/subjects/{a['id']}/grants")):
        assert getattr(client, method)(url, headers=mine).status_code == 401, url
    assert check(client, a["token"], {"stage": "input", "use": "txt2img"}).status_code == 401
    # ... and the registrar still sees everything, records included.
    full = client.get(f"/v1/subjects/{a['id']}/uses", headers=auth(keys.registrar)).json()["uses"]
    assert all(u["record"]["decision_id"] == u["decision_id"] for u in full)
    assert client.get(f"/v1/subjects/{a['id']}/uses", headers=auth(keys.generator)).status_code == 403


def test_export_revoke_and_erasure_request(client: TestClient, keys: Keys, people: dict[str, dict[str, str]]) -> None:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    a, b = people["a"], people["b"]
    mine = auth(a["token"])
    exported = client.get(f"/v1/subjects/{a['id']}/export", headers=mine)
    assert exported.status_code == 200, exported.text
    data = exported.json()
    text = json.dumps(data)
    assert data["subject"]["id"] == a["id"] and data["enrolments"][0]["notice_version"] == "n-2"
    assert [g["id"] for g in data["grants"]] == [a["grant"]] and data["access_tokens"][0]["token_id"] == a["token_id"]
    kinds = [h["kind"] for h in data["history"]]
    assert kinds[:3] == ["subject", "enrolment", "grant"] and "subject" in kinds[3:]  # token issued: on the ledger
    assert b["id"] not in text and "Grace" not in text
    assert not {"embedding_ct", "image_ct", "profile_ct", "secret_sha256"} & set(_keys(data))

    revoked = client.delete(f"/v1/grants/{a['grant']}", headers=mine)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    revocation = gw.audit.query(subject=a["id"], kind="revocation")[0][0].record
    assert revocation["actor"] == f"subject-token:{a['token_id']}"

    asked = client.post(f"/v1/subjects/{a['id']}/erasure-requests", headers=mine)
    assert asked.status_code == 202 and asked.json()["state"] == "queued"
    queued = client.get("/v1/erasure-requests", headers=auth(keys.registrar)).json()["requests"]
    assert [r["subject_id"] for r in queued] == [a["id"]]
    assert client.get(f"/v1/subjects/{a['id']}", headers=mine).status_code == 200  # not erased yet

    gw.settings.extra["subject_erasure"] = "immediate"
    try:
        erased = client.post(f"/v1/subjects/{b['id']}/erasure-requests", headers=auth(b["token"]))
    finally:
        del gw.settings.extra["subject_erasure"]
    assert erased.status_code == 200 and erased.json()["kind"] == "erasure"
    assert erased.json()["counts"]["access_tokens"] == 1
    assert client.get(f"/v1/subjects/{b['id']}", headers=auth(b["token"])).status_code == 401  # token gone too


def test_expired_and_forged_tokens(client: TestClient, keys: Keys, people: dict[str, dict[str, str]]) -> None:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    a = people["a"]
    r = client.post(f"/v1/subjects/{a['id']}/access-tokens", headers=auth(keys.registrar), json={"expires_in": 60})
    token = r.json()
    with gw.engine.begin() as conn:
        conn.execute(sa.text("UPDATE registry_access_tokens SET expires_at = :t WHERE id = :i"),
                     {"t": datetime.now(UTC) - timedelta(seconds=1), "i": token["token_id"]})
    expired = client.get(f"/v1/subjects/{a['id']}", headers=auth(token["token"]))
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
    forged = token["token"][:-4] + "AAAA"
    assert client.get(f"/v1/subjects/{a['id']}", headers=auth(forged)).status_code == 401
    assert client.get(f"/v1/subjects/{a['id']}", headers=auth("cgs_nonsense")).status_code == 401
    assert client.post(f"/v1/subjects/{a['id']}/access-tokens", headers=auth(keys.registrar),
                       json={"expires_in": 10}).status_code == 422


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()
