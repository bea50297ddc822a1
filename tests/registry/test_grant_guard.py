"""Consent that names something real (#22.4): a grant naming a use the active policy does not define
is refused with 422 listing the policy's uses; a grant for a tenant with no keys and no declaration
is refused unless the registrar says the tenant is new (`allow_new_tenant`), or the tenant is declared
in CONSENTGATE_TENANTS. The CLI refuses the same, through the same guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.settings import Settings
from tests.support.cli import app, cli_data_dir, runner
from tests.support.gateway import app_client, auth, make_settings


def _subject(client, keys) -> str:  # type: ignore[no-untyped-def]
    r = client.post("/v1/subjects", headers=auth(keys.registrar), json={"display_name": "Someone"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.mark.db
def test_grants_refuse_unknown_uses_and_tenants(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, tenants=("declared-studio",))
    with app_client(settings) as (client, keys):
        sid = _subject(client, keys)

        def grant(**body: object) -> tuple[int, dict[str, object]]:
            r = client.post(f"/v1/subjects/{sid}/grants", headers=auth(keys.registrar), json=body)
            return r.status_code, r.json()

        code, body = grant(grantee_tenant="acme", uses=["txt2imgg"])
        assert code == 422
        message = str(body["error"]["message"])  # type: ignore[index]
        assert "use 'txt2imgg' is not defined by the active policy; its uses: " in message
        assert "txt2img" in message.split("its uses: ")[1] and "img2img" in message
        code, body = grant(grantee_tenant="studoi", uses=["txt2img"])
        assert code == 422 and "tenant 'studoi' has no API keys and is not declared" in str(body)
        code, body = grant(grantee_tenant="studoi", uses=["txt2img"], allow_new_tenant=True)
        assert code == 201 and body["grantee_tenant"] == "studoi"
        assert grant(grantee_tenant="declared-studio", uses=["txt2img"])[0] == 201
        assert grant(grantee_tenant="acme", uses=["txt2img", "img2img"])[0] == 201  # acme holds keys
        # allow_new_tenant never admits an unknown use
        assert grant(grantee_tenant="studoi", uses=["nope"], allow_new_tenant=True)[0] == 422
        listed = client.get(f"/v1/subjects/{sid}/grants", headers=auth(keys.registrar)).json()["grants"]
        assert sorted(g["grantee_tenant"] for g in listed) == ["acme", "declared-studio", "studoi"]


def test_cli_grant_refuses_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSENTGATE_TENANTS", raising=False)
    cli_data_dir(tmp_path, monkeypatch, init=True)
    sid = json.loads(runner.invoke(app, ["registry", "subject", "add", "Someone"]).stdout)["id"]
    bad_use = runner.invoke(app, ["registry", "grant", sid, "--tenant", "demo", "--use", "txt2imgg"])
    assert bad_use.exit_code == 1 and "use 'txt2imgg' is not defined by the active policy" in bad_use.output
    bad_tenant = runner.invoke(app, ["registry", "grant", sid, "--tenant", "studoi", "--use", "txt2img"])
    assert bad_tenant.exit_code == 1 and "tenant 'studoi' has no API keys" in bad_tenant.output
    ok = runner.invoke(app, ["registry", "grant", sid, "--tenant", "studoi", "--use", "txt2img", "--allow-new-tenant"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["grantee_tenant"] == "studoi"
    assert runner.invoke(app, ["registry", "grant", sid, "--tenant", "demo", "--use", "txt2img"]).exit_code == 0
    monkeypatch.setenv("CONSENTGATE_TENANTS", "newco, other")
    assert Settings.from_env().tenants == ("newco", "other")
    assert runner.invoke(app, ["registry", "grant", sid, "--tenant", "newco", "--use", "txt2img"]).exit_code == 0
