"""The decision record became a typed model (issue #16) but its serialisation must not move: the audit
log's leaf hashes are taken over it. `record_golden.json` was written by the code *before* the
refactor (`build_record` of commit 5a66307 on the same facts and verdict); the typed
`DecisionRecord.to_dict()` must give the same JSON byte for byte — key order, absent optional keys,
nulls, rounding — and so the same leaf hash."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from gateway.audit import canonical_json, leaf_hash
from gateway.decision import (
    FaceConsent,
    FaceFact,
    FaceMatch,
    Facts,
    HashHit,
    ModelFailure,
    NameFact,
    NsfwFact,
    Reason,
    Verdict,
)
from gateway.pipeline.record import MediaRef, build_record, caller_view
from gateway.policy.schema import Policy

GOLDEN = Path(__file__).with_name("record_golden.json")


def _record() -> dict[str, object]:
    policy = Policy.model_validate({
        "name": "golden", "models": {"fake": {"adapter": "fake"}},
        "consent": {"face_model": {"adapter": "fake"}}, "logging": {"prompt_text": True},
        "uses": {"txt2img": {"output": {"nsfw": [{"model": "fake", "labels": {"unsafe": {"deny": 0.8, "review": 0.5}}}],
                                         "faces": {"unmatched": "allow"}}}}})
    now = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)
    facts = Facts(stage="output", use="txt2img", tenant="acme", end_user=None, now=now, media_count=2, prompt="a cat",
                  nsfw=(NsfwFact(0, "fake", "fake", "fake-1", {"unsafe": 0.61234567, "suggestive": 0.1}),
                        NsfwFact(1, "fake", "fake", "fake-1", {"unsafe": 0.9, "suggestive": 0.0}, frame=3, t=1.5)),
                  faces=(FaceFact(0, (1, 2, 30, 40), 0.987654, (FaceMatch("s1", 0.9512345),)),
                         FaceFact(1, (5, 6, 70, 80), 0.5, (), frame=4, t=2.0)),
                  names=(NameFact("s2", "Zoe"),), concepts={"nudify": 0.123456, "blood": 0.5},
                  hash_hits=(HashHit(1, "s3", 12),), failures=(ModelFailure("faces", "fake", "boom"),))
    verdict = Verdict(decision="deny", reasons=(Reason("nsfw.fake.unsafe", "deny", "0.9 >= 0.8"),),
                      obligations={"watermark": {"method": "dwtDctSvd"}, "sign": True,
                                   "blur": [{"media_index": 0, "bbox": [1, 2, 30, 40]}]},
                      face_consent=(FaceConsent("granted", "g1", "s1"), FaceConsent("no_match")),
                      name_consent=(FaceConsent("no_grant", None, "s2"),),
                      shadow=({"rule": "x", "outcome": "review"},), grant_ids=("g1",))
    media = [MediaRef("ab" * 32, "image/png", 320, 240), MediaRef("cd" * 32, "video/mp4", 64, 48, 2.5)]
    return build_record(decision_id="d" * 32, request_id="r" * 32, facts=facts, verdict=verdict, policy=policy,
                        policy_digest="p" * 64, media=media).to_dict()


def test_the_typed_record_serialises_as_before_byte_for_byte() -> None:
    golden = GOLDEN.read_text().strip()
    assert json.dumps(_record()) == golden
    assert leaf_hash(canonical_json(_record())) == leaf_hash(canonical_json(json.loads(golden)))


def test_optional_keys_are_absent_and_nullable_keys_present() -> None:
    record = _record()
    assert record["end_user"] is None and "video" not in record and "software_agent" not in record
    assert record["prompt"] == "a cat"  # this policy logs prompt text
    assert "t" not in record["findings"]["nsfw"][0] and record["findings"]["nsfw"][1]["t"] == 1.5


def test_a_generator_sees_consent_states_not_subjects() -> None:
    view = caller_view(_record(), tenant="acme", is_operator=False)
    assert view["findings"]["faces"][0]["matches"]  # granted: the generator holds the grant
    assert view["findings"]["faces"][1]["matches"] == []
    assert view["findings"]["prompt"][0]["subject_id"] is None
    assert all(h["subject_id"] is None for h in view["findings"]["hashes"])
