"""Issue #15.2 on the proxy path: each output decision of a proxied request is bound to the request's own
input decision — its record names `input_decision_id` and inherits the identities the input found (an edit
of an enrolled person's picture — Grace Hopper, as other proxy tests enrol the astronaut: her subject id,
with the grant read again for the output). Before the fix the proxy linked them by `request_id` only and
the output decision knew nothing of the reference."""

from __future__ import annotations

import json

import httpx
import numpy as np

from tests.api.conftest import png
from tests.proxy.conftest import ProxyEnv


def test_a_proxied_edit_output_inherits_the_reference_subject(env: ProxyEnv, grace_hopper: np.ndarray) -> None:
    gw = env.gw
    registrar = gw.apikeys.create("operator", "registrar")[1]
    made = env.post("/v1/subjects", registrar, json={"display_name": "Proxy Binding Person"})
    assert made.status_code == 201, made.text
    sid = made.json()["id"]
    enrol = env.post(f"/v1/subjects/{sid}/faces", registrar, data={"notice_version": "n1"},
                     files=[("media", ("a.png", png(grace_hopper), "image/png"))])
    assert enrol.status_code == 201, enrol.text
    grant = env.post(f"/v1/subjects/{sid}/grants", registrar, json={"grantee_tenant": "acme", "uses": ["img2img"]})
    assert grant.status_code == 201, grant.text
    try:
        resp = env.post("/v1/generate/demo", data={"request": json.dumps({"prompt": "as an oil painting"})},
                        files=[("media", ("ref.png", png(grace_hopper), "image/png"))])
        assert resp.status_code == 200, resp.text
        body = resp.json()
        input_id = body["input_decision"]["decision_id"]
        assert body["input_decision"]["use"] == "img2img" and body["input_decision"]["decision"] == "allow"
        [image] = body["images"]
        out = env.record(image["audit_index"])
        assert out["stage"] == "output" and out["use"] == "img2img"
        assert out["input_decision_id"] == input_id
        assert out["findings"]["inherited"] == [{"subject_id": sid, "source": "face",
                                                 "consent": {"grant_id": grant.json()["id"], "state": "granted"}}]
        assert grant.json()["id"] in out["grant_ids"]
    finally:  # the proxy env is shared by the session: leave no enrolled face behind
        erased = httpx.delete(f"{env.url}/v1/subjects/{sid}", headers=env.headers(registrar), timeout=60)
        assert erased.status_code == 200, erased.text
