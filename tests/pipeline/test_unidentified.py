"""A face that is seen but cannot be identified is a state (`unidentified`), never a silence: the
pipeline records it (bbox, size, why) and the policy reviews or denies it; an input that must carry
a face (`require_faces`, default 1 for face_swap inputs) is denied without one. Memory ports and
the fake face analyzer (identity 255 = found but not embeddable), no database."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifiers.fake import UNIDENTIFIABLE, draw_fake_face, fake_face_embedding
from classifiers.registry import builtin_registry
from gateway.apikeys import Principal
from gateway.decision import GrantFact, SubjectFact
from gateway.media import MediaLimits
from gateway.metrics import Metrics
from gateway.pipeline import CheckRequest, Pipeline, PipelineConfig, PipelinePorts
from gateway.pipeline.fakes import ManualClock, MemoryAudit, MemoryConsent, MemoryReleaser, StaticPolicies
from gateway.policy.manager import PolicyManager
from gateway.policy.runtime import ModelPool

POLICY = """
name: unidentified
consent:
  face_model: {adapter: fake}
  match_threshold: 0.9
  unidentified: review
  min_face_px: 40
  identify_min_px: 48
uses:
  txt2img:
    input: {}
    output: {faces: {unmatched: allow, without_consent: deny}}
  img2img:
    input: {faces: {unmatched: allow, unidentified: deny, min_face_px: 16}}
    output: {}
  face_swap:
    input: {faces: {unmatched: deny, without_consent: deny, unidentified: deny}}
    output: {}
"""
ACME = Principal("k1", "acme", "generator")
PERSON = 7


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def image(*faces: tuple[int, int]) -> bytes:
    """A grey 256² PNG with fake faces (identity, size) side by side."""
    img = np.full((256, 256, 3), 128, np.uint8)
    x = 4
    for identity, size in faces:
        draw_fake_face(img, identity, x, 100, size)
        x += size + 8
    return png(img)


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> StaticPolicies:
    folder: Path = tmp_path_factory.mktemp("policies")
    (folder / "default.yaml").write_text(POLICY)
    return StaticPolicies(PolicyManager(folder, ModelPool(builtin_registry())).build())


@pytest.fixture
def pipeline(policies: StaticPolicies, tmp_path: Path) -> Pipeline:
    consent = MemoryConsent()
    consent.templates["fake"] = [(f"s{PERSON}", fake_face_embedding(PERSON))]
    consent.subjects[f"s{PERSON}"] = SubjectFact(f"s{PERSON}", protected=False)
    ports = PipelinePorts(policies=policies, consent=consent, audit=MemoryAudit(), releaser=MemoryReleaser(),
                          clock=ManualClock(), metrics=Metrics())
    return Pipeline(ports, PipelineConfig(limits=MediaLimits(), scratch_dir=tmp_path))


def check(pipeline: Pipeline, use: str, stage: str, *media: bytes) -> dict:
    record = asyncio.run(pipeline.check(ACME, CheckRequest(use=use, stage=stage), list(media)))
    return record.to_dict()


def rules(record: dict) -> list[str]:
    return [r["rule"] for r in record["reasons"]]


def test_a_face_seen_but_not_embeddable_is_unidentified_and_reviewed(pipeline: Pipeline) -> None:
    record = check(pipeline, "txt2img", "output", image((UNIDENTIFIABLE, 64)))
    assert record["decision"] == "review"
    assert "txt2img.output.faces.unidentified" in rules(record)
    (face,) = record["findings"]["faces"]
    assert face["consent"] == {"grant_id": None, "state": "unidentified"}
    assert face["unidentified"]["size_px"] == 64 and "not embeddable" in face["unidentified"]["why"]


def test_an_unmatched_face_too_small_to_identify_is_unidentified_not_nobody(pipeline: Pipeline) -> None:
    # 44 px: above min_face_px (40), below identify_min_px (48): an unmatched embedding says too little
    record = check(pipeline, "txt2img", "output", image((9, 44)))
    assert record["decision"] == "review"
    (face,) = record["findings"]["faces"]
    assert face["consent"]["state"] == "unidentified" and "48 px" in face["unidentified"]["why"]
    # the same face large enough is a confident "nobody enrolled": allowed, as before
    big = check(pipeline, "txt2img", "output", image((9, 64)))
    assert big["decision"] == "allow" and big["findings"]["faces"][0]["consent"]["state"] == "no_match"
    assert "unidentified" not in big["findings"]["faces"][0]


def test_below_min_face_px_is_recorded_not_ruled_on(pipeline: Pipeline) -> None:
    record = check(pipeline, "txt2img", "output", image((UNIDENTIFIABLE, 24)))
    assert record["decision"] == "allow"
    assert record["findings"]["faces"][0]["consent"]["state"] == "unidentified"
    # a per-stage min_face_px (img2img input: 16 px, outcome deny) rules on the same face
    strict = check(pipeline, "img2img", "input", image((UNIDENTIFIABLE, 24)))
    assert strict["decision"] == "deny" and "img2img.input.faces.unidentified" in rules(strict)


def test_a_small_face_that_matches_is_still_a_match(pipeline: Pipeline) -> None:
    record = check(pipeline, "txt2img", "output", image((PERSON, 24)))
    assert record["decision"] == "deny" and "txt2img.output.consent.face" in rules(record)
    assert record["findings"]["faces"][0]["consent"]["state"] == "no_grant"


def test_a_face_swap_reference_without_an_identifiable_face_is_denied(pipeline: Pipeline) -> None:
    empty = check(pipeline, "face_swap", "input", image())
    assert empty["decision"] == "deny" and rules(empty) == ["face_swap.input.faces.required"]
    assert "0 identifiable face(s)" in empty["reasons"][0]["detail"]
    turned = check(pipeline, "face_swap", "input", image((UNIDENTIFIABLE, 80)))
    assert turned["decision"] == "deny"
    assert {"face_swap.input.faces.unidentified", "face_swap.input.faces.required"} <= set(rules(turned))
    # two parts: each must carry a face
    two = check(pipeline, "face_swap", "input", image((PERSON, 64)), image())
    assert any(r["rule"] == "face_swap.input.faces.required" and "media 1" in r["detail"] for r in two["reasons"])


def test_a_face_swap_reference_with_a_granted_face_is_allowed(pipeline: Pipeline) -> None:
    consent = pipeline.ports.consent
    assert isinstance(consent, MemoryConsent)
    now = pipeline.clock()
    consent.grants[f"s{PERSON}"] = [GrantFact("g1", f"s{PERSON}", "acme", None, ("face_swap",),
                                              now - timedelta(days=1), None, None)]
    record = check(pipeline, "face_swap", "input", image((PERSON, 64)))
    assert record["decision"] == "allow", record["reasons"]


def test_a_face_just_under_the_match_threshold_is_unidentified_not_nobody(policies: StaticPolicies,
                                                                          tmp_path: Path) -> None:
    """match_threshold 0.9, near_match_margin 0.01 (default): similarity 0.895 is a near match, 0.885 is not."""
    consent = MemoryConsent()
    mine = fake_face_embedding(PERSON)
    other = fake_face_embedding(9) - float(fake_face_embedding(9) @ mine) * mine
    other /= np.linalg.norm(other)
    template = 0.895 * mine + np.sqrt(1 - 0.895**2) * other  # cosine 0.895 with person 7's face
    consent.templates["fake"] = [("s-near", template.astype(np.float32))]
    consent.subjects["s-near"] = SubjectFact("s-near", protected=False)
    ports = PipelinePorts(policies=policies, consent=consent, audit=MemoryAudit(), releaser=MemoryReleaser(),
                          clock=ManualClock(), metrics=Metrics())
    near = Pipeline(ports, PipelineConfig(limits=MediaLimits(), scratch_dir=tmp_path))
    record = check(near, "txt2img", "output", image((PERSON, 64)))
    assert record["decision"] == "review"
    (face,) = record["findings"]["faces"]
    assert face["consent"]["state"] == "unidentified" and face["matches"] == []
    assert "0.895" in face["unidentified"]["why"] and "s-near" not in str(record)
    far = 0.885 * mine + np.sqrt(1 - 0.885**2) * other
    consent.templates["fake"] = [("s-near", far.astype(np.float32))]
    record = check(near, "txt2img", "output", image((PERSON, 64)))
    assert record["decision"] == "allow" and record["findings"]["faces"][0]["consent"]["state"] == "no_match"

