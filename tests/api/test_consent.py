"""Consent enforced on every face and every name, through the HTTP app with real dlib:
enrol the astronaut; her resized / JPEG / pasted copies are denied without a grant, allowed with
one for this tenant and use, denied for another tenant or use, after revoke and after expiry, and
not matched after erasure; Grace Hopper never matches; a protected name in a prompt is denied."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.api.conftest import Keys, auth, check, jpeg, png


def resized(img: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((side, side), Image.Resampling.LANCZOS))


def pasted(face_img: np.ndarray, scene: np.ndarray) -> np.ndarray:
    out = scene.copy()
    crop = np.asarray(Image.fromarray(face_img[40:300, 120:330]).resize((170, 210)))
    out[100:310, 300:470] = crop
    return out


@pytest.fixture(scope="module")
def enrolled(gateway_client: tuple[TestClient, Keys], astronaut: np.ndarray) -> dict[str, Any]:
    client, keys = gateway_client
    r = client.post("/v1/subjects", headers=auth(keys.registrar),
                    json={"display_name": "Eileen Collins", "aliases": ["Commander Collins"]})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    r = client.post(f"/v1/subjects/{sid}/faces", headers=auth(keys.registrar), data={"notice_version": "bipa-2026-1"},
                    files=[("media", ("a.png", png(astronaut), "image/png"))])
    assert r.status_code == 201, r.text
    r = client.post("/v1/subjects", headers=auth(keys.registrar),
                    json={"display_name": "Grace Hopper", "aliases": ["Amazing Grace"], "protected": True})
    return {"astronaut": sid, "protected": r.json()["id"]}


def output(client: TestClient, key: str, image: bytes, use: str = "txt2img", end_user: str | None = None,
           stage: str = "output", input_decision_id: str | None = None) -> Any:
    req: dict[str, Any] = {"stage": stage, "use": use}
    if end_user:
        req["end_user"] = end_user
    if input_decision_id:
        req["input_decision_id"] = input_decision_id
    resp = check(client, key, req, image)
    assert resp.status_code == 200, resp.text
    return resp.json()


def face_states(record: dict[str, Any]) -> list[str]:
    return [f["consent"]["state"] for f in record["findings"]["faces"]]


def test_copies_of_enrolled_face_denied_without_grant(client: TestClient, keys: Keys, enrolled: dict[str, Any],
                                                      astronaut: np.ndarray, coffee: np.ndarray) -> None:
    for image in (jpeg(resized(astronaut, 300)), jpeg(astronaut, quality=70), png(pasted(astronaut, coffee))):
        record = output(client, keys.generator, image)
        assert record["decision"] == "deny", record["reasons"]
        assert "no_grant" in face_states(record)
        assert all(f["matches"] == [] for f in record["findings"]["faces"])  # generator cannot see who
        gw = client.app.state.gateway  # type: ignore[attr-defined]
        stored = gw.audit.entry(record["audit"]["index"]).record
        assert any(m["subject_id"] == enrolled["astronaut"] for f in stored["findings"]["faces"] for m in f["matches"])


def test_grant_scoping_revocation_expiry(client: TestClient, keys: Keys, enrolled: dict[str, Any],
                                         astronaut: np.ndarray) -> None:
    sid = enrolled["astronaut"]
    image = jpeg(astronaut, quality=70)
    r = client.post(f"/v1/subjects/{sid}/grants", headers=auth(keys.registrar),
                    json={"grantee_tenant": "acme", "uses": ["txt2img"],
                          "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()})
    assert r.status_code == 201, r.text
    grant_id = r.json()["id"]
    allowed = output(client, keys.generator, image)
    assert allowed["decision"] == "allow", allowed["reasons"]
    face = allowed["findings"]["faces"][0]
    assert face["consent"] == {"grant_id": grant_id, "state": "granted"}
    assert face["matches"] == [{"subject_id": sid}]  # the grantee sees who, never a similarity (#15.6)
    assert allowed["grant_ids"] == [grant_id]

    assert output(client, keys.other_generator, image)["decision"] == "deny"  # another tenant
    assert output(client, keys.generator, image, use="txt2video")["decision"] == "deny"  # another use

    gw = client.app.state.gateway  # type: ignore[attr-defined]
    real_clock = gw.pipeline.clock
    gw.pipeline.clock = lambda: datetime.now(UTC) + timedelta(days=2)
    try:
        expired = output(client, keys.generator, image)
    finally:
        gw.pipeline.clock = real_clock
    assert expired["decision"] == "deny" and face_states(expired) == ["expired"]

    assert client.delete(f"/v1/grants/{grant_id}", headers=auth(keys.registrar)).status_code == 200
    revoked = output(client, keys.generator, image)
    assert revoked["decision"] == "deny" and face_states(revoked) == ["revoked"]


def test_end_user_scoped_grant(client: TestClient, keys: Keys, enrolled: dict[str, Any], astronaut: np.ndarray) -> None:
    sid = enrolled["astronaut"]
    r = client.post(f"/v1/subjects/{sid}/grants", headers=auth(keys.registrar),
                    json={"grantee_tenant": "acme", "grantee_end_user": "alice", "uses": ["img2img"]})
    grant_id = r.json()["id"]
    image = jpeg(astronaut)
    # img2img outputs are bound to their input decision (#15.2): the reference is checked first
    alice_in = output(client, keys.generator, image, use="img2img", end_user="alice", stage="input")
    assert alice_in["decision"] == "allow"
    assert output(client, keys.generator, image, use="img2img", end_user="alice",
                  input_decision_id=alice_in["decision_id"])["decision"] == "allow"
    assert output(client, keys.generator, image, use="img2img", end_user="bob", stage="input")["decision"] == "deny"
    client.delete(f"/v1/grants/{grant_id}", headers=auth(keys.registrar))


def test_grace_hopper_never_matches_the_astronaut(client: TestClient, keys: Keys, enrolled: dict[str, Any],
                                                  grace_hopper: np.ndarray) -> None:
    record = output(client, keys.generator, jpeg(grace_hopper))
    assert record["decision"] == "allow" and face_states(record) == ["no_match"]
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    stored = gw.audit.entry(record["audit"]["index"]).record
    assert stored["findings"]["faces"][0]["matches"] == []


def test_names_in_prompts(client: TestClient, keys: Keys, enrolled: dict[str, Any]) -> None:
    protected = check(client, keys.generator, {"stage": "input", "use": "txt2img",
                                               "prompt": "a portrait of AMAZING GRACE at sea"}).json()
    assert protected["decision"] == "deny"
    assert protected["findings"]["prompt"][0]["consent"]["state"] == "protected"
    assert protected["findings"]["prompt"][0]["subject_id"] is None  # hidden from the generator
    named = check(client, keys.generator, {"stage": "input", "use": "txt2img",
                                           "prompt": "eileen collins on the moon"}).json()
    assert named["decision"] == "deny"
    assert named["findings"]["prompt"][0]["consent"]["state"] in ("no_grant", "revoked")  # revoked earlier
    unrelated = check(client, keys.generator, {"stage": "input", "use": "txt2img", "prompt": "a collinsia flower"})
    assert unrelated.json()["decision"] == "allow"


def test_uses_endpoint_lists_decisions(client: TestClient, keys: Keys, enrolled: dict[str, Any],
                                       astronaut: np.ndarray) -> None:
    output(client, keys.generator, jpeg(astronaut))
    uses = client.get(f"/v1/subjects/{enrolled['astronaut']}/uses", headers=auth(keys.registrar)).json()
    assert uses["uses"] and all(u["record"]["kind"] == "decision" for u in uses["uses"])
    assert client.get(f"/v1/subjects/{enrolled['astronaut']}/uses", headers=auth(keys.generator)).status_code == 403
    assert client.get("/v1/subjects", headers=auth(keys.generator)).status_code == 403


def test_erasure_stops_matching(client: TestClient, keys: Keys, astronaut: np.ndarray) -> None:
    r = client.post("/v1/subjects", headers=auth(keys.registrar), json={"display_name": "Temp Person"})
    sid = r.json()["id"]
    # Enrol a second template of the astronaut under another subject, then erase it.
    client.post(f"/v1/subjects/{sid}/faces", headers=auth(keys.registrar), data={"notice_version": "v1"},
                files=[("media", ("a.jpg", jpeg(resized(astronaut, 400)), "image/jpeg"))])
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    matched = gw.audit.entry(output(client, keys.generator, jpeg(astronaut))["audit"]["index"]).record
    assert sid in json.dumps(matched["findings"]["faces"])
    receipt = client.delete(f"/v1/subjects/{sid}", headers=auth(keys.registrar)).json()
    assert receipt["kind"] == "erasure" and isinstance(receipt["audit"]["index"], int)
    after = gw.audit.entry(output(client, keys.generator, jpeg(astronaut))["audit"]["index"]).record
    assert sid not in json.dumps(after["findings"]["faces"])


def test_verify_reports_grant_revoked_after_release(client: TestClient, keys: Keys, enrolled: dict[str, Any],
                                                    astronaut: np.ndarray) -> None:
    sid = enrolled["astronaut"]
    grant_id = client.post(f"/v1/subjects/{sid}/grants", headers=auth(keys.registrar),
                           json={"grantee_tenant": "acme", "uses": ["txt2img"]}).json()["id"]
    released = client.post("/v1/release", headers=auth(keys.generator),
                           data={"request": json.dumps({"use": "txt2img"})},
                           files=[("media", ("r.jpg", jpeg(astronaut), "image/jpeg"))])
    assert released.status_code == 200, released.text

    def verify() -> dict[str, Any]:
        resp = client.post("/v1/provenance/verify", headers=auth(keys.generator),
                           files={"media": ("f", released.content, "image/jpeg")})
        assert resp.status_code == 200, resp.text
        return resp.json()["decisions"][0]  # type: ignore[no-any-return]

    before = verify()
    assert before["decision_id"] == released.headers["x-decision-id"]
    assert before["grants"] == [{"grant_id": grant_id, "state": "granted"}]
    client.delete(f"/v1/grants/{grant_id}", headers=auth(keys.registrar))
    after = verify()
    assert after["grants"] == [{"grant_id": grant_id, "state": "revoked"}]
    other = client.post("/v1/provenance/verify", headers=auth(keys.other_generator),
                        files={"media": ("f", released.content, "image/jpeg")}).json()["decisions"][0]
    assert "grants" not in other and "tenant" not in other  # another tenant sees the decision, not its consent
