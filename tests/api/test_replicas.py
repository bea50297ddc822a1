"""Two gateway replicas on one database (PostgreSQL under CONSENTGATE_TEST_DATABASE_URL, else one
SQLite file): an enrolment through one is matched by the other within 2 s, a revoke through one is
enforced by the other on its very next request, and both append to one consistent audit log."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.audit import verify_database
from tests.api.conftest import auth, check, jpeg, make_settings, png


@pytest.mark.db
def test_two_replicas_share_registry_and_log(tmp_path: Path, astronaut: np.ndarray) -> None:
    first = make_settings(tmp_path / "a")
    # Same database, same keys (as replicas share a Secret), separate processes' state.
    second = first.with_overrides(policies_dir=first.policies_dir)
    with TestClient(create_app(first)) as a, TestClient(create_app(second)) as b:
        gw_a: Any = a.app.state.gateway  # type: ignore[attr-defined]
        gw_b: Any = b.app.state.gateway  # type: ignore[attr-defined]
        assert gw_a is not gw_b and gw_a.registry is not gw_b.registry
        registrar = gw_a.apikeys.create("operator", "registrar")[1]
        generator = gw_a.apikeys.create("acme", "generator")[1]
        sid = a.post("/v1/subjects", headers=auth(registrar), json={"display_name": "Eileen Collins"}).json()["id"]
        r = a.post(f"/v1/subjects/{sid}/faces", headers=auth(registrar), data={"notice_version": "v1"},
                   files=[("media", ("a.png", png(astronaut), "image/png"))])
        assert r.status_code == 201, r.text
        image = jpeg(astronaut, quality=70)
        deadline = time.monotonic() + 2.0
        while True:  # replica B sees the new enrolment within 2 s
            record = check(b, generator, {"stage": "output", "use": "txt2img"}, image).json()
            if record["findings"]["faces"][0]["consent"]["state"] != "no_match":
                break
            assert time.monotonic() < deadline, "replica B did not see the enrolment within 2 s"
            time.sleep(0.2)
        assert record["decision"] == "deny"
        grant = a.post(f"/v1/subjects/{sid}/grants", headers=auth(registrar),
                       json={"grantee_tenant": "acme", "uses": ["txt2img"]}).json()["id"]
        assert check(b, generator, {"stage": "output", "use": "txt2img"}, image).json()["decision"] == "allow"
        assert a.delete(f"/v1/grants/{grant}", headers=auth(registrar)).status_code == 200
        after = check(b, generator, {"stage": "output", "use": "txt2img"}, image).json()  # the very next request
        assert after["decision"] == "deny" and after["findings"]["faces"][0]["consent"]["state"] == "revoked"
        indexes = [check(c, generator, {"stage": "input", "use": "txt2img"}).json()["audit"]["index"]
                   for c in (a, b, a, b)]
        assert indexes == sorted(indexes) and len(set(indexes)) == 4
        gw_a.audit.publish_checkpoint()
        report = verify_database(gw_a.engine, gw_a.audit.signer)
        assert report.ok, report.message
        assert report.entries == gw_b.audit.head().tree_size
