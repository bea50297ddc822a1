"""Policy loading: clear errors (file, line, field path), registered models only, overlays that
may only tighten (unless the base allows loosening), signatures, shadow reports, schema export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli.policy import shadow_summary
from gateway.policy.loader import PolicyError, bundle_digest
from gateway.policy.schema import export_json_schema
from tests.support.cli import REPO, app, runner
from tests.support.policy import FAKE_HEAD, load, write

BASE = "\n" + FAKE_HEAD + """\
prompt:
  rules:
    - {id: nudify, terms: [nudify], outcome: deny}
uses:
  txt2img:
    output:
      nsfw:
        - model: fake
          labels: {unsafe: {deny: 0.8, review: 0.5}}
"""


def test_error_names_file_line_and_field(tmp_path: Path) -> None:
    write(tmp_path, BASE.replace("deny: 0.8, review: 0.5", "deny: 0.8, review: 1.5"))
    with pytest.raises(PolicyError) as err:
        load(tmp_path)
    msg = err.value.errors[0]
    assert msg.startswith(f"{tmp_path / 'default.yaml'}:14:")
    assert "uses.txt2img.output.nsfw.0.labels.unsafe.review" in msg


def test_unknown_keys_and_models_rejected(tmp_path: Path) -> None:
    write(tmp_path, BASE + "surprise: 1\n")
    with pytest.raises(PolicyError) as err:
        load(tmp_path)
    assert "surprise" in str(err.value) and "Extra inputs" in str(err.value)
    write(tmp_path, BASE.replace("adapter: fake}\nconsent", "adapter: nsfw-9000}\nconsent"))
    with pytest.raises(PolicyError) as err:
        load(tmp_path)
    assert "no nsfw model adapter is registered under the name 'nsfw-9000'" in str(err.value)


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    write(tmp_path, BASE + "uses: [\n")
    with pytest.raises(PolicyError) as err:
        load(tmp_path)
    assert "YAML syntax error" in str(err.value) and "default.yaml:16:" in str(err.value)


def test_check_referencing_undefined_model(tmp_path: Path) -> None:
    write(tmp_path, BASE.replace("- model: fake", "- model: ghost"))
    with pytest.raises(PolicyError) as err:
        load(tmp_path)
    assert "model 'ghost' is not defined under `models`" in str(err.value)


TIGHTER = """
uses:
  txt2img:
    output:
      nsfw:
        - model: fake
          labels: {unsafe: {deny: 0.6, review: 0.3}}
"""
LOOSER = TIGHTER.replace("deny: 0.6, review: 0.3", "deny: 0.95, review: 0.5")


def test_overlay_may_tighten(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    write(tmp_path, TIGHTER, "tenants/acme.yaml")
    bundle = load(tmp_path)
    thr = bundle.overlays["acme"].uses["txt2img"].output.nsfw[0].labels["unsafe"]  # type: ignore[attr-defined]
    assert thr.deny == 0.6
    assert bundle.overlays["acme"].prompt.rules[0].id == "nudify"  # type: ignore[attr-defined]


def test_overlay_may_not_loosen_unless_base_allows(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    write(tmp_path, LOOSER, "tenants/acme.yaml")
    with pytest.raises(PolicyError) as err:
        load(tmp_path)
    assert "uses.txt2img.output.nsfw.fake.unsafe" in str(err.value) and "only tighten" in str(err.value)
    write(tmp_path, BASE + "tenant_may_loosen: {settings: [uses.txt2img.output.nsfw.fake]}\n")
    bundle = load(tmp_path)
    assert bundle.overlays["acme"].uses["txt2img"].output.nsfw[0].labels["unsafe"].deny == 0.95  # type: ignore[attr-defined]


@pytest.mark.parametrize("overlay", [
    "prompt: {rules: []}\n",
    "consent: {match_threshold: 0.99}\n",
    "obligations: {sign: false}\n",
    "logging: {prompt_text: true}\n",
    "uses: {voice_clone: {input: {}}}\n",
    "uses: {txt2img: {output: {nsfw: [{model: fake, labels: {unsafe: {deny: 0.8, review: 0.5}}, shadow: true}]}}}\n",
    "consent: {unidentified: allow}\n",
    "consent: {min_face_px: 200}\n",
    "consent: {identify_min_px: 8}\n",
    "uses: {txt2img: {output: {faces: {unidentified: allow}}}}\n",
])
def test_each_kind_of_loosening_is_refused(tmp_path: Path, overlay: str) -> None:
    write(tmp_path, BASE)
    write(tmp_path, overlay, "tenants/t.yaml")
    with pytest.raises(PolicyError):
        load(tmp_path)


def test_digest_covers_overlays_and_routes_not_tests(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    first = bundle_digest(tmp_path)
    write(tmp_path, "cases: []\n", "tests/x.yaml")
    assert bundle_digest(tmp_path) == first
    write(tmp_path, "routes: {}\n", "routes.yaml")
    assert bundle_digest(tmp_path) != first


def test_validate_cli_exit_codes(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    ok = runner.invoke(app, ["policy", "validate", str(tmp_path)])
    assert ok.exit_code == 0 and "ok: policy 'base'" in ok.output
    write(tmp_path, BASE.replace("outcome: deny", "outcome: maybe"))
    bad = runner.invoke(app, ["policy", "validate", str(tmp_path)])
    assert bad.exit_code == 1 and "prompt.rules.0.outcome" in bad.output


def test_repo_policies_validate_and_pass_their_tests() -> None:
    for name in ("default", "strict"):
        result = runner.invoke(app, ["policy", "validate", str(REPO / "policies"), "--name", name])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["policy", "test", str(REPO / "policies")])
    assert result.exit_code == 0, result.output
    assert " 0 failed" in result.output


def test_policy_test_reports_failures(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    write(tmp_path, "cases:\n  - name: wrong\n    facts: {stage: output, use: txt2img, "
                    "nsfw: [{model: fake, scores: {unsafe: 0.9}}]}\n    expect: {decision: allow}\n", "tests/c.yaml")
    result = runner.invoke(app, ["policy", "test", str(tmp_path)])
    assert result.exit_code == 1 and "FAIL" in result.output and "decision deny, expected allow" in result.output


def test_signature_required_when_trust_key_set(tmp_path: Path) -> None:
    from gateway.policy.signing import generate_keypair, sign_bundle, verifier

    write(tmp_path, BASE)
    keydir = tmp_path.parent / f"{tmp_path.name}-keys"
    keydir.mkdir()
    generate_keypair(keydir / "k", keydir / "k.pub")
    check = verifier(keydir / "k.pub")
    with pytest.raises(PolicyError, match="missing"):
        check(tmp_path, bundle_digest(tmp_path))
    sign_bundle(tmp_path, keydir / "k")
    check(tmp_path, bundle_digest(tmp_path))  # valid signature: no error
    write(tmp_path, BASE.replace("0.8", "0.81"))  # the bundle changed after signing
    with pytest.raises(PolicyError, match="does not match"):
        check(tmp_path, bundle_digest(tmp_path))
    generate_keypair(keydir / "other", keydir / "other.pub")
    sign_bundle(tmp_path, keydir / "other")  # signed by someone else
    with pytest.raises(PolicyError, match="does not match"):
        check(tmp_path, bundle_digest(tmp_path))


def test_schema_json_is_current() -> None:
    committed = json.loads((REPO / "policies" / "schema.json").read_text())
    current = json.loads(json.dumps(export_json_schema()))
    assert committed == current, "stale: run consentgate policy schema --out policies/schema.json"


def test_shadow_summary_counts_disagreements() -> None:
    records = [
        {"decision": "allow", "findings": {"shadow": [{"rule": "r.fake.unsafe", "outcome": "deny"}]}},
        {"decision": "allow", "findings": {"shadow": [{"rule": "r.fake.unsafe", "outcome": "allow"}]}},
        {"decision": "deny", "findings": {"shadow": [{"rule": "r.fake.unsafe", "outcome": "deny"}]}},
        {"decision": "deny", "findings": {"shadow": []}},
    ]
    summary = shadow_summary(records)["r.fake.unsafe"]
    assert summary["evaluated"] == 3 and summary["disagree"] == 1
    assert summary["live_allow_shadow_deny"] == 1 and summary["disagreement_rate"] == pytest.approx(1 / 3, abs=1e-3)


@pytest.mark.parametrize("overlay", ["video: {sample_fps: 1.0}\n", "video: {watermark_strength: 0.5}\n",
                                     "video: {max_seconds: 100000}\n"])
def test_video_loosening_is_refused(tmp_path: Path, overlay: str) -> None:
    write(tmp_path, BASE)
    write(tmp_path, overlay, "tenants/t.yaml")
    with pytest.raises(PolicyError, match="video"):
        load(tmp_path)
    write(tmp_path, "video: {sample_fps: 4.0}\n", "tenants/t.yaml")  # more frames checked: tighter
    assert load(tmp_path).overlays["t"].video.sample_fps == 4.0  # type: ignore[attr-defined]
