"""Why: the backend people deploy must rule like the one they try (issue #20). The shipped policy
bundle (policies/: default.yaml — opennsfw and NudeNet with its face proposals, dlib faces, PDQ,
MiniLM prompts, the Resemblyzer voice model — its tenant overlay and routes) runs on the ray backend
against the real local cluster and gives the in-process verdicts on the packaged images: the
astronaut, enrolled without a grant, is denied; coffee and chelsea are allowed; Grace Hopper (not
enrolled) gets the same verdict and face findings on both."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.api.conftest import Keys, auth, check, png, verify_log
from tests.rayserve.conftest import Forwarder
from tests.support.gateway import database_url

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]
OUTPUT = {"stage": "output", "use": "txt2img"}


def _settings(tmp: Path, **extra: Any) -> Settings:
    policies = tmp / "policies"
    shutil.copytree(REPO / "policies", policies)  # the shipped bundle, as `consentgate serve` loads it
    return Settings(data_dir=tmp / "data", policies_dir=policies, database_url=database_url(tmp),
                    policy_reload_interval_s=0.2, audit_checkpoint_every=1, audit_checkpoint_interval_ms=50,
                    model_timeout_s=120.0, check_deadline_s=300.0, **extra)


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on where the models ran (scores are compared apart, to 3 decimals)."""
    return {
        "decision": record["decision"],
        "rules": sorted({(r["rule"], r["outcome"]) for r in record["reasons"]}),
        "faces": sorted((tuple(f["bbox"]), f["consent"]["state"]) for f in record["findings"]["faces"]),
        "nsfw": sorted((f["model"], f["media_index"]) for f in record["findings"]["nsfw"]),
    }


def _scores(record: dict[str, Any]) -> dict[str, float]:
    return {f"{f['model']}:{label}": round(float(v), 3)
            for f in record["findings"]["nsfw"] for label, v in f["scores"].items()}


def test_the_default_policy_rules_the_same_on_ray_as_in_process(
    tmp_path: Path, ray_cluster: Any, astronaut: np.ndarray, coffee: np.ndarray,
    chelsea: np.ndarray, grace_hopper: np.ndarray,
) -> None:
    images = {"astronaut": png(astronaut), "coffee": png(coffee), "chelsea": png(chelsea),
              "grace_hopper": png(grace_hopper)}
    records: dict[str, dict[str, dict[str, Any]]] = {}
    relay = Forwarder(ray_cluster.serve_port)
    try:
        for backend in ("inprocess", "ray"):
            extra: dict[str, Any] = {"model_backend": "ray", "ray_address": relay.url} if backend == "ray" else {}
            with TestClient(create_app(_settings(tmp_path / backend, **extra))) as tc:
                keys = Keys(tc)
                ready = tc.get("/readyz", headers=auth(keys.admin)).json()
                assert ready["ready"], ready
                assert ready["policy"]["name"] == "default"
                if backend == "ray":
                    assert ready["model_backend"]["problems"] == []
                sid = tc.post("/v1/subjects", json={"display_name": "Astronaut"},
                              headers=auth(keys.registrar)).json()["id"]
                enrolled = tc.post(f"/v1/subjects/{sid}/faces", headers=auth(keys.registrar),
                                   data={"notice_version": "v1"},
                                   files=[("media", ("a.png", images["astronaut"], "image/png"))])
                assert enrolled.status_code == 201, enrolled.text
                records[backend] = {}
                for name, data in images.items():
                    resp = check(tc, keys.admin if name == "astronaut" else keys.generator, OUTPUT, data)
                    assert resp.status_code == 200, resp.text
                    records[backend][name] = resp.json()
                if backend == "ray":  # the faces were analysed on the face deployment, not in process
                    # (the gateway's count of Ray round trips: the deployment's own stats are per replica)
                    text = tc.get("/metrics").text
                    pattern = (r'consentgate_ray_round_trip_seconds_count\{family="face",op="(?:detect|analyze)",'
                               r'outcome="ok"\} (\S+)')
                    assert sum(float(v) for v in re.findall(pattern, text)) >= len(images)
                verify_log(tc)
    finally:
        relay.close()

    local, remote = records["inprocess"], records["ray"]
    # the verdicts, on both backends
    for where in (local, remote):
        assert where["astronaut"]["decision"] == "deny"
        assert "txt2img.output.consent.face" in {r["rule"] for r in where["astronaut"]["reasons"]}
        astro_faces = where["astronaut"]["findings"]["faces"]
        assert [f["consent"]["state"] for f in astro_faces if f["matches"]] == ["no_grant"]
        assert where["coffee"]["decision"] == "allow" and where["coffee"]["findings"]["faces"] == []
        assert where["chelsea"]["decision"] == "allow"
    # and the same findings wherever the models ran
    for name in images:
        assert _summary(remote[name]) == _summary(local[name]), name
        assert _scores(remote[name]) == pytest.approx(_scores(local[name]), abs=2e-3), name
