"""Fail closed: a model that raises or hangs → deny naming the stage and model, still audited;
an audit log that cannot be written → 503 and no verdict released; the registry down → deny."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import Keys, check, png, solid


@pytest.fixture
def fake_faults(client: TestClient) -> Iterator[object]:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    faults = gw.policies.active.runtime.nsfw["fake"].faults
    yield faults
    faults.raise_error = False
    faults.sleep_s = 0.0


def test_model_error_denies_with_audit_entry(client: TestClient, keys: Keys, fake_faults: object) -> None:
    fake_faults.raise_error = True  # type: ignore[attr-defined]
    record = check(client, keys.generator, {"stage": "output", "use": "txt2img"}, png(solid((10, 200, 10)))).json()
    assert record["decision"] == "deny"
    reason = next(r for r in record["reasons"] if r["rule"].endswith(".failed"))
    assert "output stage" in reason["detail"] and "fake" in reason["detail"]
    assert record["findings"]["failures"][0]["model"] == "fake"
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    assert gw.audit.entry(record["audit"]["index"]).record["decision"] == "deny"


def test_model_timeout_denies(client: TestClient, keys: Keys, fake_faults: object) -> None:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    old = gw.pipeline.model_timeout_s
    gw.pipeline.model_timeout_s = 0.2
    fake_faults.sleep_s = 1.0  # type: ignore[attr-defined]
    try:
        record = check(client, keys.generator, {"stage": "output", "use": "txt2img"}, png(solid((10, 200, 10)))).json()
    finally:
        gw.pipeline.model_timeout_s = old
    assert record["decision"] == "deny"
    assert any("timed out" in r["detail"] for r in record["reasons"])


def test_audit_failure_is_503_and_nothing_released(client: TestClient, keys: Keys) -> None:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    before = gw.audit.head().tree_size
    gw.audit.faults.fail_appends = 1
    resp = check(client, keys.generator, {"stage": "output", "use": "txt2img"}, png(solid((10, 200, 10))))
    assert resp.status_code == 503
    body = resp.json()
    assert body["error"]["code"] == "not_ready" and "decision" not in body
    assert gw.audit.head().tree_size == before
    gw.audit.faults.fail_commits = 1
    resp = check(client, keys.generator, {"stage": "output", "use": "txt2img"}, png(solid((10, 200, 10))))
    assert resp.status_code == 503
    assert gw.audit.head().tree_size == before


def test_registry_down_denies(client: TestClient, keys: Keys, astronaut: object) -> None:
    from tests.api.conftest import jpeg

    gw = client.app.state.gateway  # type: ignore[attr-defined]
    gw.registry.faults.unavailable = True
    try:
        record = check(client, keys.generator, {"stage": "input", "use": "img2img"}, jpeg(astronaut)).json()  # type: ignore[arg-type]
    finally:
        gw.registry.faults.unavailable = False
    assert record["decision"] == "deny"
    assert any("consent" in r["rule"] and r["outcome"] == "deny" for r in record["reasons"])
