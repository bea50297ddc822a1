"""Issue #15.10: nothing is allowed unchecked. An output check or release with no media, or with
media under a part name the endpoint does not read (`image=` instead of `media=`), is a 400 naming
the problem (before the fix both answered allow, "no rule fired"); `stage` is required on
/v1/check; deleting a tenant overlay is a loosening like any other; `/readyz` without an admin key
says ready or not and nothing else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from classifiers.registry import builtin_registry
from gateway.policy.manager import PolicyManager
from gateway.policy.runtime import ModelPool
from tests.support.gateway import Keys, app_client, auth, make_settings, png, verify_audit


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Keys]]:
    tmp = tmp_path_factory.mktemp("gw")
    with app_client(make_settings(tmp), tmp) as made:
        yield made
        verify_audit(made[0])


def image() -> bytes:
    return png(np.full((64, 64, 3), (200, 180, 40), np.uint8))


def post(tc: TestClient, path: str, key: str, request: dict[str, object], part: str | None = "media") -> dict:
    files = [(part, ("r.png", image(), "image/png"))] if part else None
    resp = tc.post(path, headers=auth(key), data={"request": json.dumps(request)}, files=files)
    return {"status": resp.status_code, "body": resp.json() if "json" in resp.headers.get("content-type", "") else None}


def entries(tc: TestClient) -> int:
    return int(tc.app.state.gateway.audit.head().tree_size)  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/v1/check", "/v1/release"])
def test_an_output_check_without_media_is_400_not_allow(gateway: tuple[TestClient, Keys], path: str) -> None:
    tc, keys = gateway
    before = entries(tc)
    got = post(tc, path, keys.generator, {"stage": "output", "use": "txt2img"}, part=None)
    assert got["status"] == 400, got
    assert got["body"]["error"]["code"] == "media_required"
    assert "media" in got["body"]["error"]["message"]
    assert entries(tc) == before  # nothing decided, nothing recorded


@pytest.mark.parametrize("path", ["/v1/check", "/v1/release", "/v1/jobs"])
@pytest.mark.parametrize("stage", ["input", "output"])
def test_media_under_a_part_name_the_endpoint_does_not_read_is_400(gateway: tuple[TestClient, Keys], path: str,
                                                                    stage: str) -> None:
    tc, keys = gateway
    before = entries(tc)
    got = post(tc, path, keys.generator, {"stage": stage, "use": "txt2img"}, part="image")
    assert got["status"] == 400, got
    assert got["body"]["error"]["code"] == "unknown_part"
    assert "'image'" in got["body"]["error"]["message"] and "`media`" in got["body"]["error"]["message"]
    assert entries(tc) == before


def test_stage_is_required_on_check(gateway: tuple[TestClient, Keys]) -> None:
    tc, keys = gateway
    got = post(tc, "/v1/check", keys.generator, {"use": "txt2img"})
    assert got["status"] == 400, got
    assert got["body"]["error"]["code"] == "stage_required"
    ok = post(tc, "/v1/check", keys.generator, {"stage": "output", "use": "txt2img"})
    assert ok["status"] == 200 and ok["body"]["stage"] == "output"


def test_an_input_check_may_carry_only_a_prompt(gateway: tuple[TestClient, Keys]) -> None:
    tc, keys = gateway
    got = post(tc, "/v1/check", keys.generator, {"stage": "input", "use": "txt2img", "prompt": "nudify"}, part=None)
    assert got["status"] == 200 and got["body"]["decision"] == "deny"


def test_readyz_without_an_admin_key_says_only_ready_or_not(gateway: tuple[TestClient, Keys]) -> None:
    tc, keys = gateway
    for headers in ({}, auth(keys.generator), auth(keys.auditor), auth("cg_000000000000_nope")):
        resp = tc.get("/readyz", headers=headers)
        assert resp.status_code == 200 and resp.json() == {"ready": True}
    full = tc.get("/readyz", headers=auth(keys.admin)).json()
    assert full["ready"] is True and full["policy"]["name"] == "test" and "tenants" in full["policy"]


BASE = """
name: base
models:
  fake: {adapter: fake}
consent: {face_model: {adapter: fake}}
uses:
  txt2img:
    output:
      nsfw:
        - model: fake
          labels: {unsafe: {deny: 0.8, review: 0.5}}
"""
TIGHTER = """
uses:
  txt2img:
    output:
      nsfw:
        - model: fake
          labels: {unsafe: {deny: 0.6, review: 0.3}}
"""


def manager(folder: Path) -> PolicyManager:
    m = PolicyManager(folder, ModelPool(builtin_registry()))
    assert m.reload(), m.last_error
    return m


def test_deleting_a_tightening_overlay_is_refused_and_the_last_good_stays(tmp_path: Path) -> None:
    (tmp_path / "tenants").mkdir()
    (tmp_path / "default.yaml").write_text(BASE)
    (tmp_path / "tenants" / "acme.yaml").write_text(TIGHTER)
    m = manager(tmp_path)
    (tmp_path / "tenants" / "acme.yaml").unlink()
    assert m.reload() is False
    assert "acme" in (m.last_error or "") and "uses.txt2img.output.nsfw.fake.unsafe" in (m.last_error or "")
    assert m.active is not None and "acme" in m.active.overlay_runtimes  # acme keeps its stricter policy
    assert m.active.for_tenant("acme").policy.uses["txt2img"].output.nsfw[0].labels["unsafe"].deny == 0.6  # type: ignore[union-attr]


def test_deleting_an_overlay_is_allowed_when_the_base_allows_that_loosening(tmp_path: Path) -> None:
    (tmp_path / "tenants").mkdir()
    (tmp_path / "default.yaml").write_text(BASE + "tenant_may_loosen: {settings: [uses.txt2img.output.nsfw.fake]}\n")
    (tmp_path / "tenants" / "acme.yaml").write_text(TIGHTER)
    m = manager(tmp_path)
    (tmp_path / "tenants" / "acme.yaml").unlink()
    assert m.reload() is True, m.last_error
    assert m.active is not None and "acme" not in m.active.overlay_runtimes


def test_an_overlay_no_longer_applying_is_a_removal_too(tmp_path: Path) -> None:
    (tmp_path / "tenants").mkdir()
    (tmp_path / "default.yaml").write_text(BASE)
    (tmp_path / "tenants" / "acme.yaml").write_text(TIGHTER)
    m = manager(tmp_path)
    (tmp_path / "tenants" / "acme.yaml").write_text("applies_to: [other]\n" + TIGHTER)
    assert m.reload() is False and "acme" in (m.last_error or "")
