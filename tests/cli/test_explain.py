"""Explain = decide (#22.2): `consentgate policy explain` builds the runtime the gateway builds (the
same policy activation, models and — with --data-dir — the real registry, read-only) and agrees
with /v1/check on the packaged portraits, enrolled and not, with and without a grant; it prints the
rules that fired with the scores and consent states behind them, and records nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gateway.settings import Settings
from tests.support.cli import REPO, app, runner
from tests.support.gateway import app_client, auth, png


def _explain(settings: Settings, request: Path, image: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["policy", "explain", "--request", str(request), "--media", str(image),
                                 "--policies", str(settings.policies_dir), "--tenant", "acme", *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1), result.output  # 2: bad input or a refused bundle
    assert "--json" not in extra or result.stdout.startswith("{"), (result.stdout, result.stderr)
    return result.exit_code, result.stdout


def _summary(record: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    return (record["decision"], sorted(r["rule"] for r in record["reasons"]),
            [f["consent"]["state"] for f in record["findings"].get("faces", [])])


@pytest.mark.slow
def test_explain_agrees_with_check_on_portraits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                astronaut: np.ndarray, grace_hopper: np.ndarray,
                                                coffee: np.ndarray) -> None:
    monkeypatch.delenv("CONSENTGATE_DATABASE_URL", raising=False)
    settings = Settings(data_dir=tmp_path / "data", policies_dir=REPO / "policies")
    images = {}
    for name, arr in (("astronaut", astronaut), ("grace_hopper", grace_hopper), ("coffee", coffee)):
        images[name] = tmp_path / f"{name}.png"
        Image.fromarray(arr).save(images[name])
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"stage": "output", "use": "txt2img"}))
    data = ["--data-dir", str(settings.data_dir)]
    with app_client(settings) as (client, keys):
        def compare(name: str) -> tuple[str, list[str], list[str]]:
            r = client.post("/v1/check", headers=auth(keys.generator), data={"request": request.read_text()},
                            files=[("media", ("m.png", images[name].read_bytes(), "image/png"))])
            assert r.status_code == 200, r.text
            code, out = _explain(settings, request, images[name], *data, "--json")
            explained = json.loads(out)
            assert _summary(explained) == _summary(r.json()), name
            assert code == (0 if explained["decision"] == "allow" else 1)
            return _summary(explained)

        log = client.app.state.gateway.audit  # type: ignore[attr-defined]
        # Nobody enrolled: the astronaut's face matches nobody.
        assert compare("astronaut")[2] == ["no_match"]
        r = client.post("/v1/subjects", headers=auth(keys.registrar), json={"display_name": "Eileen Collins"})
        sid = r.json()["id"]
        r = client.post(f"/v1/subjects/{sid}/faces", headers=auth(keys.registrar), data={"notice_version": "v1"},
                        files=[("media", ("a.png", png(astronaut), "image/png"))])
        assert r.status_code == 201, r.text
        # Enrolled without a grant: denied by both; Grace Hopper and the coffee are not her.
        decision, rules, states = compare("astronaut")
        assert decision == "deny" and states == ["no_grant"]
        assert compare("grace_hopper")[2] == ["no_match"]
        assert compare("coffee") == ("allow", ["default"], [])
        # With a grant for this tenant and use: allowed by both, through the grant.
        r = client.post(f"/v1/subjects/{sid}/grants", headers=auth(keys.registrar),
                        json={"grantee_tenant": "acme", "uses": ["txt2img"]})
        assert r.status_code == 201, r.text
        assert compare("astronaut")[:1] == ("allow",) and compare("astronaut")[2] == ["granted"]
        # Explain records nothing (the checks above appended one entry each).
        size = log.head().tree_size
        text_code, text = _explain(settings, request, images["astronaut"], *data)
        assert text_code == 0 and "decision: allow" in text and "consent granted (grant " in text
        assert "scores media 0 opennsfw" in text and "face 0: media 0" in text
        assert log.head().tree_size == size


def test_explain_without_registry_says_so_and_refuses_a_bad_bundle(tmp_path: Path, coffee: np.ndarray) -> None:
    image = tmp_path / "c.png"
    Image.fromarray(coffee).save(image)
    request = tmp_path / "r.json"
    request.write_text(json.dumps({"stage": "output", "use": "txt2img"}))
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "default.yaml").write_text(
        "name: p\nmodels: {fake: {adapter: fake}}\nconsent: {face_model: {adapter: fake}}\nuses:\n  txt2img:\n"
        "    output:\n      nsfw:\n        - {model: fake, labels: {unsafe: {deny: 0.8}}}\n")
    result = runner.invoke(app, ["policy", "explain", "--request", str(request), "--media", str(image),
                                 "--policies", str(policies)])
    assert result.exit_code == 0, result.output
    assert "registry: none (no --data-dir)" in result.stdout and "decision: allow" in result.stdout
    missing = runner.invoke(app, ["policy", "explain", "--request", str(request), "--media", str(image),
                                  "--policies", str(policies), "--data-dir", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and f"no data dir at {tmp_path / 'nope'}" in missing.output
    (policies / "default.yaml").write_text((policies / "default.yaml").read_text().replace("unsafe", "nsfww"))
    refused = runner.invoke(app, ["policy", "explain", "--request", str(request), "--media", str(image),
                                  "--policies", str(policies)])
    assert refused.exit_code == 2 and "the gateway would refuse this bundle" in refused.output
    assert "label 'nsfww' is not produced" in refused.output
