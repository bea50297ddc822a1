"""An auditor needs no database access (#17.7, #17.8): `consentgate audit export --url`,
`audit verify --url` and `audit witness URL` work over the API with an auditor key and the public
key alone; a tampered answer or the wrong key fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import gateway.cli.audit as cli_audit
from gateway.audit import CheckpointSigner
from tests.api.conftest import Keys, check
from tests.support.cli import app, runner

pytestmark = pytest.mark.db  # PostgreSQL too when CONSENTGATE_TEST_DATABASE_URL is set

@pytest.fixture
def over_api(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setattr(cli_audit, "http_client", lambda url: client)
    return client


def test_export_verify_and_witness_over_the_api(over_api: TestClient, keys: Keys, tmp_path: Path) -> None:
    gw = over_api.app.state.gateway  # type: ignore[attr-defined]
    vkey = gw.audit.signer.vkey
    for _ in range(3):
        check(over_api, keys.generator, {"stage": "input", "use": "txt2img"})
    gw.audit.publish_checkpoint()
    base = ["--url", "http://testserver", "--api-key", keys.auditor, "--key", vkey]

    exported = runner.invoke(app, ["audit", "export", "--out", str(tmp_path / "exp"), *base])
    assert exported.exit_code == 0, exported.output
    summary = json.loads(exported.stdout)
    assert summary["entries"] == gw.audit.latest_checkpoint().tree_size and summary["checkpoints"] == 1
    offline = runner.invoke(app, ["audit", "verify", "--export", str(tmp_path / "exp"), "--key", vkey])
    assert offline.exit_code == 0, offline.output

    verified = runner.invoke(app, ["audit", "verify", *base])
    assert verified.exit_code == 0, verified.output
    other = CheckpointSigner.generate(gw.audit.origin).vkey
    wrong = runner.invoke(app, ["audit", "verify", "--url", "http://testserver", "--api-key", keys.auditor,
                                "--key", other])
    assert wrong.exit_code == 1 and "does not verify" in wrong.output

    state = tmp_path / "witness.state"
    witnessed = runner.invoke(app, ["audit", "witness", "http://testserver", "--state", str(state),
                                    "--key", vkey, "--api-key", keys.auditor])
    assert witnessed.exit_code == 0, witnessed.output
    check(over_api, keys.generator, {"stage": "input", "use": "txt2img"})
    gw.audit.publish_checkpoint()
    again = runner.invoke(app, ["audit", "witness", "http://testserver", "--state", str(state),
                                "--key", vkey, "--api-key", keys.auditor])
    assert again.exit_code == 0, again.output
    result = json.loads(again.stdout)
    assert result["ok"] and result["size"] > result["previous_size"]

    # A tenant auditor sees only its tenant's entries: with another tenant's entry in the log, the
    # export has a gap and does not verify.
    check(over_api, keys.other_generator, {"stage": "input", "use": "txt2img"})
    gw.audit.publish_checkpoint()
    partial = runner.invoke(app, ["audit", "verify", "--url", "http://testserver", "--api-key", keys.tenant_auditor,
                                  "--key", vkey])
    assert partial.exit_code == 1
    no_key = runner.invoke(app, ["audit", "verify", "--url", "http://testserver", "--api-key", keys.auditor])
    assert no_key.exit_code == 1 and "--key" in no_key.output
