"""Issue #15.5 through the HTTP app with real dlib: with the key store's rows gone, a gateway
(re)started on the same data says not ready (`/readyz` 503) and the enrolled astronaut is denied
with a reason that names the registry — before the fix she became `no_match` (allow) while
`/readyz` said ready. The registry-level table is tests/registry/test_fails_closed.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.registry.crypto import keystore_subject_keys
from tests.support.gateway import Keys, auth, make_settings, png, verify_audit


def output(client: TestClient, key: str, image: bytes) -> dict:
    request = json.dumps({"stage": "output", "use": "txt2img"})
    resp = client.post("/v1/check", headers=auth(key), data={"request": request},
                       files=[("media", ("a.png", image, "image/png"))])
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_an_emptied_key_store_is_not_ready_and_denies(tmp_path: Path, astronaut: np.ndarray) -> None:
    settings = make_settings(tmp_path)
    face = png(astronaut)
    with TestClient(create_app(settings)) as client:
        keys = Keys(client)
        sid = client.post("/v1/subjects", headers=auth(keys.registrar),
                          json={"display_name": "Eileen Collins"}).json()["id"]
        enrolled = client.post(f"/v1/subjects/{sid}/faces", headers=auth(keys.registrar),
                               data={"notice_version": "n1"}, files=[("media", ("a.png", face, "image/png"))])
        assert enrolled.status_code == 201, enrolled.text
        before = output(client, keys.generator, face)
        assert before["decision"] == "deny" and before["findings"]["faces"][0]["consent"]["state"] == "no_grant"
        engine = client.app.state.gateway.registry.crypto.keystore.engine  # type: ignore[attr-defined]
        with engine.begin() as conn:
            conn.execute(keystore_subject_keys.delete())  # the key store's rows are gone
        assert client.get("/readyz").status_code == 503
        generator = keys.generator
    with TestClient(create_app(settings)) as client:  # a restart on the same data
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {"ready": False}
        after = output(client, generator, face)
        assert after["decision"] == "deny"
        assert any("registry" in r["rule"] or "registry" in r["detail"] or "key store" in r["detail"]
                   for r in after["reasons"]), after["reasons"]
        assert all(f["consent"]["state"] != "no_match" for f in after["findings"].get("faces", []))
        verify_audit(client)
