"""What was made under a grant (#17.2, #17.8): `GET /v1/grants/{id}/uses`, the revoke response and
`GET /v1/subjects/{id}/uses` list each decision with its outputs (sha256, watermark id, manifest
digest) and a receipt that checks offline with only the log's public key; a decision of another
tenant that merely saw the face is a use of the subject but not of the grant."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.audit import check_receipt
from tests.api.conftest import Keys, auth, check, jpeg, png

pytestmark = pytest.mark.db  # PostgreSQL too when CONSENTGATE_TEST_DATABASE_URL is set


@pytest.fixture(scope="module")
def granted(gateway_client: tuple[TestClient, Keys], astronaut: np.ndarray) -> dict[str, Any]:
    client, keys = gateway_client
    sid = client.post("/v1/subjects", headers=auth(keys.registrar),
                      json={"display_name": "Eileen Collins"}).json()["id"]
    r = client.post(f"/v1/subjects/{sid}/faces", headers=auth(keys.registrar), data={"notice_version": "n-1"},
                    files=[("media", ("a.png", png(astronaut), "image/png"))])
    assert r.status_code == 201, r.text
    r = client.post(f"/v1/subjects/{sid}/grants", headers=auth(keys.registrar),
                    json={"grantee_tenant": "acme", "uses": ["txt2img"]})
    assert r.status_code == 201, r.text
    return {"subject": sid, "grant": r.json()["id"]}


def test_uses_of_a_grant_carry_outputs_and_receipts(client: TestClient, keys: Keys, granted: dict[str, Any],
                                                    astronaut: np.ndarray) -> None:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    sid, gid = granted["subject"], granted["grant"]
    released = client.post("/v1/release", headers=auth(keys.generator),
                           data={"request": json.dumps({"use": "txt2img"})},
                           files=[("media", ("a.jpg", jpeg(astronaut), "image/jpeg"))])
    assert released.status_code == 200, released.text
    decision_id = released.headers["x-decision-id"]
    other = check(client, keys.other_generator, {"stage": "output", "use": "txt2img"}, jpeg(astronaut)).json()
    assert other["decision"] == "deny"  # globex holds no grant: it saw her, nothing was made
    pending = client.get(f"/v1/grants/{gid}/uses", headers=auth(keys.registrar)).json()
    if pending["uses"] and pending["uses"][0]["checkpoint_pending"]:
        assert pending["uses"][0]["receipt"] is None and pending["uses"][0]["inclusion_proof"] is None
    gw.audit.publish_checkpoint()

    uses = client.get(f"/v1/grants/{gid}/uses", headers=auth(keys.registrar)).json()
    assert [u["decision_id"] for u in uses["uses"]] == [decision_id] and uses["next_cursor"] is None
    use = uses["uses"][0]
    assert use["tenant"] == "acme" and use["use"] == "txt2img" and use["grant_ids"] == [gid]
    out = use["outputs"][0]
    assert len(out["sha256"]) == 64 and out["watermark_id"] and out["manifest_digest"]
    assert use["index"] == int(released.headers["x-audit-index"]) and not use["checkpoint_pending"]
    checked = check_receipt(use["receipt"], gw.audit.signer.vkey, origin=gw.audit.origin, record=use["record"])
    assert checked.index == use["index"]
    entry = client.get(f"/v1/audit/entries/{use['index']}", headers=auth(keys.auditor)).json()
    assert entry["inclusion_proof"] == use["inclusion_proof"]  # the same shape as /v1/audit/entries/{i}

    subject_uses = client.get(f"/v1/subjects/{sid}/uses", headers=auth(keys.registrar)).json()
    assert {u["decision_id"] for u in subject_uses["uses"]} == {decision_id, other["decision_id"]}
    first = client.get(f"/v1/subjects/{sid}/uses?limit=1", headers=auth(keys.registrar)).json()
    assert len(first["uses"]) == 1 and first["next_cursor"] is not None
    rest = client.get(f"/v1/subjects/{sid}/uses?limit=1&cursor={first['next_cursor']}",
                      headers=auth(keys.registrar)).json()
    assert [u["decision_id"] for u in first["uses"] + rest["uses"]] == [u["decision_id"] for u in subject_uses["uses"]]

    for url in (f"/v1/grants/{gid}/uses", f"/v1/subjects/{sid}/uses"):
        assert client.get(url, headers=auth(keys.generator)).status_code == 403
    assert client.get("/v1/grants/" + "0" * 32 + "/uses", headers=auth(keys.registrar)).status_code == 404

    revoked = client.delete(f"/v1/grants/{gid}", headers=auth(keys.registrar))
    assert revoked.status_code == 200, revoked.text
    body = revoked.json()
    assert body["revoked_at"] and [u["decision_id"] for u in body["uses"]] == [decision_id]
    assert body["uses_next_cursor"] is None
    ledger = [e["record"]["kind"] for e in client.get(f"/v1/audit/entries?subject={sid}",
                                                      headers=auth(keys.auditor)).json()["entries"]]
    assert ledger[:3] == ["subject", "enrolment", "grant"] and ledger[-1] == "revocation"
