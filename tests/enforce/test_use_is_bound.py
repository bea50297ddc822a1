"""Issue #15.2: the use is bound to the key, not declared by the client. A key made with `uses`
(CLI `apikey create --uses`, `POST /v1/apikeys {uses}`) that asks for another use gets 403
`use_not_allowed` on check, release, jobs and the proxy path (`Pipeline.decide`); keys made without
a list keep every use until an admin restricts them (`apikey restrict`, `PATCH /v1/apikeys/{id}`).
Before the fix, a client refused as `face_swap` could declare `txt2img` and be allowed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gateway.apikeys import Principal
from gateway.cli import app as cli_app
from gateway.cli import register
from gateway.errors import Forbidden
from gateway.pipeline import CheckRequest
from tests.enforce.test_rules_cannot_stall import make
from tests.support.gateway import Keys, app_client, auth, make_settings, png, verify_audit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Keys]]:
    tmp = tmp_path_factory.mktemp("gw")
    with app_client(make_settings(tmp), tmp) as made:
        yield made
        verify_audit(made[0])


def image() -> bytes:
    return png(np.full((64, 64, 3), (200, 180, 40), np.uint8))


def post(tc: TestClient, path: str, key: str, request: dict[str, object]) -> tuple[int, dict]:
    resp = tc.post(path, headers=auth(key), data={"request": json.dumps(request)},
                   files=[("media", ("r.png", image(), "image/png"))])
    body = resp.json() if "json" in resp.headers.get("content-type", "") else {}
    return resp.status_code, body


def test_a_key_bound_to_txt2img_cannot_declare_another_use(gateway: tuple[TestClient, Keys]) -> None:
    tc, keys = gateway
    made = tc.post("/v1/apikeys", headers=auth(keys.admin),
                   json={"tenant": "acme", "role": "generator", "uses": ["txt2img"]})
    assert made.status_code == 201 and made.json()["uses"] == ["txt2img"]
    key = made.json()["key"]
    size = tc.app.state.gateway.audit.head().tree_size  # type: ignore[attr-defined]
    for path, request in [("/v1/check", {"stage": "input", "use": "face_swap"}),
                          ("/v1/check", {"stage": "output", "use": "img2img"}),
                          ("/v1/release", {"use": "face_swap"}),
                          ("/v1/jobs", {"use": "img2img"})]:
        status, body = post(tc, path, key, request)
        assert status == 403, (path, request, body)
        assert body["error"]["code"] == "use_not_allowed" and "txt2img" in body["error"]["message"]
    assert tc.app.state.gateway.audit.head().tree_size == size  # type: ignore[attr-defined]  # nothing decided
    status, body = post(tc, "/v1/check", key, {"stage": "output", "use": "txt2img"})
    assert status == 200 and body["use"] == "txt2img"


def test_keys_without_a_list_keep_every_use_until_restricted(gateway: tuple[TestClient, Keys]) -> None:
    tc, keys = gateway
    made = tc.post("/v1/apikeys", headers=auth(keys.admin), json={"tenant": "acme", "role": "generator"}).json()
    assert made["uses"] is None
    assert post(tc, "/v1/check", made["key"], {"stage": "input", "use": "face_swap"})[0] == 200
    patched = tc.patch(f"/v1/apikeys/{made['id']}", headers=auth(keys.admin), json={"uses": ["txt2img"]})
    assert patched.status_code == 200 and patched.json()["uses"] == ["txt2img"]
    status, body = post(tc, "/v1/check", made["key"], {"stage": "input", "use": "face_swap"})
    assert status == 403 and body["error"]["code"] == "use_not_allowed"
    assert tc.patch(f"/v1/apikeys/{made['id']}", headers=auth(keys.admin), json={"uses": []}).status_code == 422
    assert tc.patch(f"/v1/apikeys/{made['id']}", headers=auth(keys.generator),
                    json={"uses": None}).status_code == 403  # only admins


def test_the_proxy_path_checks_the_route_use_against_the_key(tmp_path: Path) -> None:
    pipeline = make(tmp_path)
    bound = Principal("k1", "acme", "generator", ("img2img",))
    with pytest.raises(Forbidden) as err:
        asyncio.run(pipeline.decide(bound, CheckRequest(stage="input", use="txt2img", prompt="a cat"), []))
    assert err.value.code == "use_not_allowed"
    free = Principal("k2", "acme", "generator")
    decision = asyncio.run(pipeline.decide(free, CheckRequest(stage="input", use="txt2img", prompt="a cat"), []))
    assert decision.record.decision == "allow"


def test_cli_create_with_uses_list_and_restrict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSENTGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CONSENTGATE_POLICIES", str(REPO / "policies"))
    monkeypatch.delenv("CONSENTGATE_DATABASE_URL", raising=False)
    register(cli_app)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli_app, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout

    run("init")
    key = run("apikey", "create", "--tenant", "acme", "--role", "generator", "--uses", "txt2img,img2img").strip()
    key_id = key.split("_")[1]
    assert f"{key_id}\tacme\tgenerator" in run("apikey", "list") and "\ttxt2img,img2img\t" in run("apikey", "list")
    assert run("apikey", "restrict", key_id, "--uses", "txt2img").strip() == f"{key_id}\tuses: txt2img"
    assert run("apikey", "restrict", key_id, "--uses", "all").strip() == f"{key_id}\tuses: all"
    bad = runner.invoke(cli_app, ["apikey", "create", "--tenant", "acme", "--role", "generator", "--uses", "a b"])
    assert bad.exit_code != 0 and "not a use name" in bad.output
