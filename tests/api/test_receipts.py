"""GET /v1/audit/receipts/{decision_id} (#17.6): a generator fetches the receipt of its own
decision once a checkpoint covers it — and it checks offline with only the public key — while
another tenant's decision is a 404 and an uncovered one a 409 with Retry-After."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gateway.audit import CheckpointSigner, ProofError, check_receipt
from tests.api.conftest import Keys, auth, check, png, solid

pytestmark = pytest.mark.db  # PostgreSQL too when CONSENTGATE_TEST_DATABASE_URL is set


def test_receipt_of_own_decision_checks_offline(client: TestClient, keys: Keys) -> None:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    record = check(client, keys.generator, {"stage": "output", "use": "txt2img"}, png(solid((0, 0, 255)))).json()
    decision_id = record["decision_id"]
    url = f"/v1/audit/receipts/{decision_id}"
    head = gw.audit.head()
    if head.checkpoint_size < head.tree_size:  # not yet covered: say so, with a hint when to retry
        pending = client.get(url, headers=auth(keys.generator))
        assert pending.status_code == 409 and pending.json()["error"]["code"] == "checkpoint_pending"
        assert pending.headers["retry-after"] == "1"
    gw.audit.publish_checkpoint()
    resp = client.get(url, headers=auth(keys.generator))
    assert resp.status_code == 200, resp.text
    receipt = resp.json()
    assert receipt["decision_id"] == decision_id and receipt["index"] == record["audit"]["index"]
    assert receipt["leaf_hash"] == record["audit"]["leaf_hash"]
    checked = check_receipt(receipt, gw.audit.signer.vkey, origin=gw.audit.origin)
    assert checked.index == record["audit"]["index"]
    with pytest.raises(ProofError):
        check_receipt(receipt, CheckpointSigner.generate(gw.audit.origin).vkey)
    for key in (keys.other_generator, keys.registrar):
        assert client.get(url, headers=auth(key)).status_code in (403, 404)
    assert client.get(url, headers=auth(keys.other_generator)).json()["error"]["code"] == "not_found"
    assert client.get(url, headers=auth(keys.auditor)).status_code == 200  # the operator's auditor
    assert client.get(url, headers=auth(keys.tenant_auditor)).status_code == 200  # acme's own auditor
    assert client.get("/v1/audit/receipts/" + "0" * 32, headers=auth(keys.generator)).status_code == 404
    assert client.get("/v1/audit/receipts/bad%20id", headers=auth(keys.generator)).status_code == 422
