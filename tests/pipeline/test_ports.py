"""The pipeline as a library: a `Pipeline` built from the memory fakes of its ports (no database,
keys or signer) decides, releases and records — and each port's fault hook makes the decision fail
closed: a broken watermark or signature denies with the stage named in the record (one audit entry
each), a registry that is down denies, an audit log that is down releases nothing."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifiers.fake import draw_fake_face, fake_face_embedding
from classifiers.registry import builtin_registry
from gateway.apikeys import Principal
from gateway.decision import GrantFact, SubjectFact
from gateway.media import MediaLimits
from gateway.metrics import Metrics
from gateway.pipeline import AuditUnavailable, CheckRequest, Pipeline, PipelineConfig, PipelinePorts
from gateway.pipeline.fakes import ManualClock, MemoryAudit, MemoryConsent, MemoryReleaser, StaticPolicies
from gateway.policy.manager import PolicyManager
from gateway.policy.runtime import ModelPool
from tests.support.policy import FAKE_TXT2IMG_USES

POLICY = """
name: ports
models:
  fake: {adapter: fake}
consent:
  face_model: {adapter: fake}
  match_threshold: 0.9
obligations:
  watermark: {method: dwtDctSvd}
  sign: true
""" + FAKE_TXT2IMG_USES
ACME = Principal("k1", "acme", "generator")
PERSON = 7


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> StaticPolicies:
    folder: Path = tmp_path_factory.mktemp("policies")
    (folder / "default.yaml").write_text(POLICY)
    return StaticPolicies(PolicyManager(folder, ModelPool(builtin_registry())).build())


def make(policies: StaticPolicies, tmp_path: Path) -> tuple[Pipeline, MemoryConsent, MemoryAudit, MemoryReleaser]:
    consent, audit, releaser = MemoryConsent(), MemoryAudit(), MemoryReleaser()
    ports = PipelinePorts(policies=policies, consent=consent, audit=audit, releaser=releaser, clock=ManualClock(),
                          metrics=Metrics())
    return Pipeline(ports, PipelineConfig(limits=MediaLimits(), scratch_dir=tmp_path)), consent, audit, releaser


def grey() -> bytes:
    return png(np.full((160, 160, 3), 128, np.uint8))


def with_person() -> bytes:
    img = np.full((160, 160, 3), 128, np.uint8)
    draw_fake_face(img, PERSON, 40, 40, 64)
    return png(img)


def release(pipeline: Pipeline, data: bytes) -> tuple[str, list[str], int]:
    out = asyncio.run(pipeline.release(ACME, CheckRequest(use="txt2img"), [data]))
    return out.record.decision, [r.rule for r in out.record.reasons], len(out.files)


def test_an_allowed_release_is_marked_signed_and_recorded_once(policies: StaticPolicies, tmp_path: Path) -> None:
    pipeline, _, audit, releaser = make(policies, tmp_path)
    out = asyncio.run(pipeline.release(ACME, CheckRequest(use="txt2img"), [grey()]))
    assert out.record.decision == "allow" and len(out.files) == 1
    assert len(audit.records) == 1 and audit.records[0]["decision_id"] == out.record.decision_id
    assert out.record.audit is not None and out.record.audit.index == 0
    output = audit.records[0]["outputs"][0]
    assert output["watermark_id"].startswith("dwtDctSvd:") and output["manifest_digest"]
    assert releaser.signed == [out.record.decision_id]
    assert "audit" not in audit.records[0]  # the log stores the record without its audit field


@pytest.mark.parametrize(("fault", "rule"), [("watermark_fails", "release.watermark.failed"),
                                             ("sign_fails", "release.sign.failed")])
def test_a_broken_release_stage_denies_and_names_itself(policies: StaticPolicies, tmp_path: Path, fault: str,
                                                         rule: str) -> None:
    pipeline, _, audit, releaser = make(policies, tmp_path)
    setattr(releaser.faults, fault, True)
    decision, rules, files = release(pipeline, grey())
    assert (decision, files) == ("deny", 0) and rule in rules
    assert len(audit.records) == 1 and audit.records[0]["outputs"] == [] and audit.records[0]["decision"] == "deny"


def test_consent_decides_with_grants_read_at_decision_time(policies: StaticPolicies, tmp_path: Path) -> None:
    pipeline, consent, _, _ = make(policies, tmp_path)
    subject = f"s{PERSON}"
    consent.templates["fake"] = [(subject, fake_face_embedding(PERSON))]
    consent.subjects[subject] = SubjectFact(subject, protected=False)
    assert release(pipeline, with_person())[0] == "deny"  # a match without a grant
    now = pipeline.clock()
    consent.grants[subject] = [GrantFact("g1", subject, "acme", None, ("txt2img",), now - timedelta(days=1),
                                         now + timedelta(days=1), None)]
    assert release(pipeline, with_person())[0] == "allow"
    pipeline.clock = lambda: datetime(2030, 1, 1, tzinfo=UTC)  # the grant has expired by then
    assert release(pipeline, with_person())[0] == "deny"


def test_a_registry_that_is_down_fails_closed(policies: StaticPolicies, tmp_path: Path) -> None:
    pipeline, consent, audit, _ = make(policies, tmp_path)
    consent.faults.unavailable = True
    decision, _, files = release(pipeline, with_person())
    assert (decision, files) == ("deny", 0)
    assert audit.records[0]["findings"]["failures"][0]["check"] == "consent"


def test_an_audit_log_that_is_down_releases_nothing(policies: StaticPolicies, tmp_path: Path) -> None:
    pipeline, _, audit, _ = make(policies, tmp_path)
    audit.faults.fail_appends = 1
    with pytest.raises(AuditUnavailable):
        release(pipeline, grey())
    assert audit.records == []
    assert release(pipeline, grey())[0] == "allow"  # the next append works again


def test_no_policy_is_not_ready(tmp_path: Path) -> None:
    from gateway.errors import NotReady

    pipeline, _, audit, _ = make(StaticPolicies(None), tmp_path)
    with pytest.raises(NotReady):
        asyncio.run(pipeline.check(ACME, CheckRequest(use="txt2img"), [grey()]))
    assert audit.records == []
