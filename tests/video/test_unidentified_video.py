"""A face seen in a video but not identifiable is an `unidentified` finding with its time range, ruled
on by the policy's `consent.unidentified` like an image's — not a model failure (which denied the
video with the reason lost) and never "nobody enrolled". Unit level (rescaling and tracking keep the
reason) and end to end on a generated clip with the real dlib model and memory ports."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from classifiers.base import DetectedFace, ModelInfo
from classifiers.registry import builtin_registry
from gateway.apikeys import Principal
from gateway.decision import SubjectFact
from gateway.media import MediaLimits
from gateway.metrics import Metrics
from gateway.pipeline import CheckRequest, Pipeline, PipelineConfig, PipelinePorts
from gateway.pipeline.face_facts import NOT_EMBEDDED
from gateway.pipeline.fakes import ManualClock, MemoryAudit, MemoryConsent, MemoryReleaser, StaticPolicies
from gateway.pipeline.inherit import INPUT_BOUND_USES
from gateway.policy.manager import PolicyManager
from gateway.policy.runtime import ModelPool
from gateway.video.analysis import FrameAnalyzer
from gateway.video.sampling import SampledFrame
from gateway.video.testing import make_test_video

WHY = "profile: no landmarks to align"


class ProfileAnalyzer:
    """Two-stage analyzer that sees one face at a fixed box and can never embed it."""

    info = ModelInfo("profile", "0")
    embedding_dim = 4

    def __init__(self) -> None:
        self.embed_calls = 0

    def analyze(self, image: np.ndarray) -> list[DetectedFace]:
        return self.embed(image, self.detect(image))

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        return [DetectedFace(bbox=(10, 20, 50, 60), det_score=0.8, landmarks=((20.0, 30.0),))]

    def embed(self, image: np.ndarray, faces: Sequence[DetectedFace]) -> list[DetectedFace]:
        self.embed_calls += 1
        return [DetectedFace(bbox=f.bbox, det_score=f.det_score, landmarks=f.landmarks, unidentified=WHY)
                for f in faces]


def test_rescaled_and_tracked_faces_keep_why_they_are_unidentified() -> None:
    analyzer = ProfileAnalyzer()
    frames = FrameAnalyzer({}, analyzer, fps=2.0, source_width=320)  # frames are half the source size
    still = np.full((120, 160, 3), 90, np.uint8)
    frames([SampledFrame(i * 15, i * 0.5, still, i == 0) for i in range(3)])
    faces = frames.facts.faces
    assert [f.t for f in faces] == [0.0, 0.5, 1.0]
    assert all(f.face.bbox == (20, 40, 100, 120) for f in faces)  # mapped to the source frame
    assert all(f.face.landmarks == ((40.0, 60.0),) for f in faces)
    assert all(f.face.unidentified == WHY and f.face.embedding is None for f in faces)


class TurnedAnalyzer(ProfileAnalyzer):
    """Embeds its face but flags it as not identifiable with confidence (an analyzer's own reason)."""

    def embed(self, image: np.ndarray, faces: Sequence[DetectedFace]) -> list[DetectedFace]:
        self.embed_calls += 1
        return [DetectedFace(bbox=f.bbox, det_score=f.det_score, landmarks=f.landmarks, unidentified=WHY,
                             embedding=np.array([1.0, 0.0, 0.0, 0.0], np.float32)) for f in faces]


def test_a_tracked_face_reusing_its_embedding_keeps_the_reason() -> None:
    analyzer = TurnedAnalyzer()
    frames = FrameAnalyzer({}, analyzer, fps=2.0, source_width=160)
    still = np.random.default_rng(3).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    frames([SampledFrame(i * 15, i * 0.5, still, i == 0) for i in range(2)])
    assert analyzer.embed_calls == 1  # the second frame reused the track's embedding ...
    assert [f.face.unidentified for f in frames.facts.faces] == [WHY, WHY]  # ... and kept why


POLICY = """
name: video-unidentified
consent:
  face_model: {adapter: dlib, options: {embed: false}}
  unidentified: review
uses:
  txt2video:
    input: {}
    output: {faces: {unmatched: allow, without_consent: deny}}
  video2video:
    input: {}
    output: {faces: {unmatched: allow, without_consent: deny, unidentified: allow}}
  img2video:
    input: {}
    output: {faces: {unmatched: allow, without_consent: deny, unidentified: deny}}
"""
ACME = Principal("k1", "acme", "generator")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    root = tmp_path_factory.mktemp("unidentified")
    path = make_test_video(root / "face_then_coffee.mp4", [("astronaut", 0.0, 1.0, None), ("coffee", 1.0, 2.0, None)],
                           fps=10, size=(320, 240), audio_tone_hz=None)
    return Path(path).read_bytes()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    folder = tmp_path_factory.mktemp("policies")
    (folder / "default.yaml").write_text(POLICY)
    policies = StaticPolicies(PolicyManager(folder, ModelPool(builtin_registry())).build())
    consent = MemoryConsent()
    consent.subjects["s1"] = SubjectFact("s1", protected=False)
    audit = MemoryAudit()
    ports = PipelinePorts(policies=policies, consent=consent, audit=audit, releaser=MemoryReleaser(),
                          clock=ManualClock(), metrics=Metrics(), decisions=audit)
    return Pipeline(ports, PipelineConfig(limits=MediaLimits(), scratch_dir=tmp_path_factory.mktemp("scratch")))


def check(pipeline: Pipeline, use: str, clip: bytes) -> dict[str, Any]:
    source = None
    if use in INPUT_BOUND_USES:  # the output names its input decision (#15.2): the input check comes first
        source = asyncio.run(pipeline.check(ACME, CheckRequest(use=use, stage="input"), [])).decision_id
    record = asyncio.run(pipeline.check(ACME, CheckRequest(use=use, stage="output", input_decision_id=source),
                                        [clip]))
    return record.to_dict()


def test_a_video_face_seen_but_not_identifiable_is_ruled_on_by_the_policy(pipeline: Pipeline, clip: bytes) -> None:
    record = check(pipeline, "txt2video", clip)
    rules = {r["rule"]: r["outcome"] for r in record["reasons"]}
    assert record["decision"] == "review", record["reasons"]
    assert rules.get("txt2video.output.faces.unidentified") == "review"
    assert not any(r.endswith(".failed") for r in rules), rules  # not a model failure
    faces = record["findings"]["faces"]
    assert faces and all(f["consent"]["state"] == "unidentified" for f in faces)
    assert all(f["unidentified"]["why"] == NOT_EMBEDDED and f["unidentified"]["size_px"] >= 40 for f in faces)
    assert all(0.0 <= f["t"] < 1.0 for f in faces)  # the astronaut's second, not the coffee's
    (summary,) = record["video"][0]["faces"]
    assert summary["consent"]["state"] == "unidentified"
    assert summary["ranges"] and all(0.0 <= r0 < r1 <= 1.5 for r0, r1 in summary["ranges"])
    # the same clip under a stage that allows unidentified faces is allowed; one that denies them denies
    assert check(pipeline, "video2video", clip)["decision"] == "allow"
    denied = check(pipeline, "img2video", clip)
    assert denied["decision"] == "deny"
    assert {r["rule"] for r in denied["reasons"] if r["outcome"] == "deny"} == {"img2video.output.faces.unidentified"}
