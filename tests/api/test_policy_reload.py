"""Hot reload: a valid change is live within 2 s with no failed request; an invalid change is
refused, the last good policy keeps serving, and the error shows in /readyz and GET /v1/policy.
A configured trust key refuses unsigned or wrongly signed bundles."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.policy.signing import generate_keypair, sign_bundle
from tests.api.conftest import TEST_POLICY, auth, check, make_settings, png, solid


def wait_for(predicate, timeout: float = 2.0) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_hot_reload_valid_and_invalid(tmp_path: Path) -> None:
    # The traffic thread sends as fast as the gateway answers: lift the per-key rate limit, or a
    # fast machine gets 429s (this test is about reloads, tests/api/test_ratelimit* about limits).
    settings = make_settings(tmp_path, rate_limit_per_s=1e6, rate_limit_burst=1_000_000)
    with TestClient(create_app(settings)) as client:
        gw = client.app.state.gateway  # type: ignore[attr-defined]
        key = gw.apikeys.create("acme", "generator")[1]
        admin = gw.apikeys.create("operator", "admin")[1]
        yellow = png(solid((255, 255, 0)))
        assert check(client, key, {"stage": "output", "use": "txt2img"}, yellow).json()["decision"] == "review"
        old_digest = gw.policies.active.bundle.digest

        failures: list[int] = []
        stop = threading.Event()

        def traffic() -> None:
            while not stop.is_set():
                resp = check(client, key, {"stage": "input", "use": "txt2img", "prompt": "a tree"})
                if resp.status_code != 200:
                    failures.append(resp.status_code)

        worker = threading.Thread(target=traffic)
        worker.start()
        try:
            policy_file = settings.policies_dir / "default.yaml"
            policy_file.write_text(TEST_POLICY.replace("suggestive: {review: 0.6}", "suggestive: {deny: 0.6}"))
            took = wait_for(lambda: gw.policies.active.bundle.digest != old_digest)
            assert took < 2.0
            assert check(client, key, {"stage": "output", "use": "txt2img"}, yellow).json()["decision"] == "deny"
            good_digest = gw.policies.active.bundle.digest

            policy_file.write_text(TEST_POLICY.replace("adapter: fake", "adapter: no-such-model"))
            wait_for(lambda: gw.policies.last_error is not None)
        finally:
            stop.set()
            worker.join()
        assert failures == []
        assert gw.policies.active.bundle.digest == good_digest
        ready = client.get("/readyz", headers=auth(admin))
        assert ready.status_code == 200 and "no-such-model" in ready.json()["last_error"]
        assert client.get("/readyz").json() == {"ready": True}  # without an admin key: nothing else
        status = client.get("/v1/policy", headers=auth(admin)).json()
        assert status["digest"] == good_digest and "no-such-model" in status["last_error"]
        assert check(client, key, {"stage": "output", "use": "txt2img"}, yellow).json()["decision"] == "deny"
        record = check(client, key, {"stage": "input", "use": "txt2img"}).json()
        assert record["policy"]["digest"] == good_digest


@pytest.mark.parametrize("signed", ["missing", "bad", "good"])
def test_trust_key_requires_signature(tmp_path: Path, signed: str) -> None:
    keys = tmp_path / "signing"
    keys.mkdir()
    generate_keypair(keys / "k", keys / "k.pub")
    generate_keypair(keys / "evil", keys / "evil.pub")
    settings = make_settings(tmp_path / "gw", policy_trust_key=keys / "k.pub")
    if signed == "good":
        sign_bundle(settings.policies_dir, keys / "k")
    elif signed == "bad":
        sign_bundle(settings.policies_dir, keys / "evil")
    with TestClient(create_app(settings)) as client:
        admin = client.app.state.gateway.apikeys.create("operator", "admin")[1]  # type: ignore[attr-defined]
        ready = client.get("/readyz", headers=auth(admin))
        if signed == "good":
            assert ready.status_code == 200
        else:
            assert ready.status_code == 503
            assert "bundle.sig" in json.dumps(ready.json())


def test_face_model_switch_refused_until_reembedded(tmp_path: Path, astronaut) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        gw = client.app.state.gateway  # type: ignore[attr-defined]
        sid = gw.registry.create_subject("Eileen Collins", [], False, "test").id
        gw.registry.enroll(sid, [astronaut], "v1", "test")
        digest = gw.policies.active.bundle.digest
        (settings.policies_dir / "default.yaml").write_text(
            TEST_POLICY.replace("face_model: {adapter: dlib}", "face_model: {adapter: fake}"))
        assert gw.policies.reload() is False
        assert "reembed --model fake" in gw.policies.last_error
        assert gw.policies.active.bundle.digest == digest  # dlib policy keeps serving
