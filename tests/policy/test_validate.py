"""One validator (#22.1): `consentgate policy validate` runs exactly the checks the gateway runs when
it activates a bundle. A table of the gateway's refusals: for each, a live gateway (build_gateway,
its PolicyManager or RouteManager) refuses the bundle, and validate refuses it with the same
messages and exit 1; the repaired bundle passes both."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from classifiers.fake import FakeFaceAnalyzer, draw_fake_face
from gateway.context import Gateway, build_gateway
from gateway.policy.signing import generate_keypair, sign_bundle
from gateway.settings import Settings
from tests.support.cli import app, runner
from tests.support.policy import FAKE_HEAD, write_files

GOOD = FAKE_HEAD + """\
uses:
  txt2img:
    output:
      nsfw:
        - model: fake
          labels: &thr
            unsafe: {deny: 0.8, review: 0.5}
  img2img:
    output:
      nsfw:
        - {model: fake, labels: *thr}
"""
OVERLAY = ("uses:\n  txt2img:\n    output:\n      nsfw:\n        - model: fake\n"
           "          labels: {unsafe: {deny: 0.6, review: 0.4}}\n")


@dataclass
class Case:
    name: str
    files: dict[str, str]
    signed: bool = False  # the gateway has a trust key
    sign: Callable[[Path, Path], None] | None = None  # how the bundle gets signed (default: not at all)


def _sign_then_edit(directory: Path, key: Path) -> None:
    sign_bundle(directory, key)
    (directory / "default.yaml").write_text(GOOD.replace("0.8", "0.79"))


CASES = [
    Case("label the adapter does not produce", {"default.yaml": GOOD.replace("unsafe:", "nsfww:")}),
    Case("unknown adapter", {"default.yaml": GOOD.replace("{adapter: fake}\nconsent", "{adapter: nudenett}\nconsent")}),
    Case("unknown face adapter", {"default.yaml": GOOD.replace("face_model: {adapter: fake}",
                                                               "face_model: {adapter: dlibb}")}),
    Case("adapter options that cannot load", {"default.yaml": GOOD.replace(
        "fake: {adapter: fake}",
        "fake: {adapter: fake}\n  yahoo: {adapter: opennsfw, options: {model_path: /no/such.onnx}}")}),
    Case("review above deny behind an anchor", {"default.yaml": GOOD.replace("deny: 0.8, review: 0.5",
                                                                             "deny: 0.5, review: 0.8")}),
    Case("check naming an undefined model", {"default.yaml": GOOD.replace("- model: fake", "- model: ghost")}),
    Case("semantic concepts without a text model", {"default.yaml": GOOD + "prompt:\n  concepts:\n"
                                                    "    - {id: c, examples: [x], deny: 0.5}\n"}),
    Case("unknown adapter in an overlay", {"default.yaml": GOOD,
                                           "tenants/acme.yaml": "models:\n  fake: {adapter: fakee}\n"}),
    Case("label mistake in an overlay", {"default.yaml": GOOD,
                                         "tenants/acme.yaml": OVERLAY.replace("}}\n", "}, x: {deny: 1}}\n")}),
    Case("overlay that loosens", {"default.yaml": GOOD, "tenants/acme.yaml": OVERLAY.replace("0.6", "0.95")}),
    Case("overlay YAML syntax error", {"default.yaml": GOOD, "tenants/acme.yaml": "uses: [\n"}),
    Case("missing signature", {"default.yaml": GOOD}, signed=True),
    Case("signature of another bundle", {"default.yaml": GOOD}, signed=True, sign=_sign_then_edit),
]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("policy-keys")
    generate_keypair(d / "k", d / "k.pub")
    return d / "k", d / "k.pub"


def _settings(root: Path, trust_key: Path | None = None) -> Settings:
    return Settings(data_dir=root / "data", policies_dir=root / "policies", policy_trust_key=trust_key)


@pytest.fixture
def gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[Settings], Gateway]]:
    built: list[Gateway] = []

    def make(settings: Settings) -> Gateway:
        gw = build_gateway(settings)
        built.append(gw)
        return gw

    yield make
    for gw in built:
        gw.close()


def _validate(*args: str) -> tuple[int, list[str]]:
    result = runner.invoke(app, ["policy", "validate", *args])
    return result.exit_code, [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_validate_refuses_what_the_gateway_refuses_with_the_same_messages(
    case: Case, tmp_path: Path, keys: tuple[Path, Path], gateway: Callable[[Settings], Gateway],
) -> None:
    private, public = keys
    settings = _settings(tmp_path, public if case.signed else None)
    settings.policies_dir.mkdir(parents=True)
    write_files(settings.policies_dir, case.files)
    if case.sign is not None:
        case.sign(settings.policies_dir, private)
    gw = gateway(settings)
    assert gw.policies.reload() is False
    refused = (gw.policies.last_error or "").splitlines()
    assert refused, "the gateway gave no reason"
    args = [str(settings.policies_dir)] + (["--trust-key", str(public)] if case.signed else [])
    code, printed = _validate(*args)
    assert code == 1
    assert printed == refused


def test_repaired_bundle_passes_both(tmp_path: Path, keys: tuple[Path, Path],
                                     gateway: Callable[[Settings], Gateway]) -> None:
    private, public = keys
    settings = _settings(tmp_path, public)
    settings.policies_dir.mkdir(parents=True)
    write_files(settings.policies_dir, {"default.yaml": GOOD, "tenants/acme.yaml": OVERLAY})
    sign_bundle(settings.policies_dir, private)
    gw = gateway(settings)
    assert gw.policies.reload() is True, gw.policies.last_error
    code, printed = _validate(str(settings.policies_dir), "--trust-key", str(public))
    assert code == 0 and printed == []


def test_face_model_readiness_with_data_dir(tmp_path: Path, gateway: Callable[[Settings], Gateway]) -> None:
    """An enrolled subject without a template of the policy's face model: the gateway refuses the
    bundle (its faces would match nobody); validate --data-dir says the same, read-only."""
    settings = _settings(tmp_path)
    settings.policies_dir.mkdir(parents=True)
    write_files(settings.policies_dir, {"default.yaml": GOOD})
    gw = gateway(settings)
    assert gw.registry is not None
    other = FakeFaceAnalyzer(name="other")
    gw.registry.face_analyzers = {"other": other}
    subject = gw.registry.create_subject("Someone", [], False, "test")
    image = np.full((160, 160, 3), 255, np.uint8)
    draw_fake_face(image, 3, 40, 40, 80)
    gw.registry.enroll(subject.id, [image], "v1", "test")
    assert gw.policies.reload() is False
    refused = (gw.policies.last_error or "").splitlines()
    assert "enrolled subject(s) have no 'fake' template" in refused[0]
    code, printed = _validate(str(settings.policies_dir), "--data-dir", str(settings.data_dir))
    assert code == 1 and printed == refused
    code, printed = _validate(str(settings.policies_dir))  # without --data-dir: not checked, and says so
    assert code == 0


def test_validate_checks_every_policy_file_and_routes(tmp_path: Path) -> None:
    d = tmp_path / "policies"
    second = GOOD.replace("{adapter: fake}\nconsent", "{adapter: nope}\nconsent")
    write_files(d, {"default.yaml": GOOD, "second.yaml": second})
    code, printed = _validate(str(d))
    assert code == 1 and len(printed) == 1 and printed[0].startswith(f"{d / 'second.yaml'}:3: models.fake.adapter")
    code, _ = _validate(str(d), "--name", "default")
    assert code == 0
    (d / "second.yaml").unlink()
    (d / "routes.yaml").write_text("routes:\n  demo: {kind: openai-images, url: ftp://x, use: txt2img}\n")
    code, printed = _validate(str(d))
    assert code == 1 and any(str(d / "routes.yaml") in line for line in printed)


def test_voice_model_readiness_with_data_dir(tmp_path: Path, gateway: Callable[[Settings], Gateway]) -> None:
    """A subject with an enrolled voice but no template of the policy's voice model: the gateway
    refuses the bundle (that voice would match nobody) and validate --data-dir says the same."""
    from datetime import UTC, datetime

    from sqlmodel import Session

    from gateway.registry.models import RegistryVoiceEnrolment, RegistryVoiceTemplate

    settings = _settings(tmp_path)
    settings.policies_dir.mkdir(parents=True)
    with_voice = "consent: {face_model: {adapter: fake}, voice_model: {adapter: fake}}"
    write_files(settings.policies_dir,
                {"default.yaml": GOOD.replace("consent: {face_model: {adapter: fake}}", with_voice)})
    gw = gateway(settings)
    assert gw.registry is not None
    assert gw.policies.reload() is True, gw.policies.last_error  # nobody has a voice yet
    subject = gw.registry.create_subject("Someone", [], False, "test")
    now = datetime.now(UTC)
    with Session(gw.engine) as s:
        s.add(RegistryVoiceEnrolment(id="e1", subject_id=subject.id, notice_version="v1", enrolled_by="test",
                                     clip_count=1, created_at=now))
        s.flush()
        s.add(RegistryVoiceTemplate(subject_id=subject.id, enrolment_id="e1", model="other", model_version="1",
                                    dim=4, embedding_ct=b"x", created_at=now))
        s.commit()
    assert gw.policies.reload() is False
    refused = (gw.policies.last_error or "").splitlines()
    assert "consent.voice_model: 1 voice-enrolled subject(s) have no 'fake' template" in refused[0]
    assert refused[0].startswith(f"{settings.policies_dir / 'default.yaml'}:4: ")
    code, printed = _validate(str(settings.policies_dir), "--data-dir", str(settings.data_dir))
    assert code == 1 and printed == refused
