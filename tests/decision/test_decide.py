"""decide() as tables: facts → expected verdict. Pure: no models, no database, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gateway.decision import (
    FaceFact,
    FaceMatch,
    Facts,
    GrantFact,
    HashHit,
    InheritedFact,
    ModelFailure,
    NameFact,
    NsfwFact,
    SubjectFact,
    decide,
    strictest,
)
from gateway.policy.schema import Policy

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

POLICY = Policy.model_validate({
    "name": "table",
    "models": {"fake": {"adapter": "fake"}, "other": {"adapter": "fake"}, "shadowed": {"adapter": "fake"}},
    "prompt": {"rules": [
        {"id": "nudify", "terms": ["nudify", "Zoë"], "outcome": "deny"},
        {"id": "borderline", "regexes": [r"\blingerie\b"], "outcome": "review"},
        {"id": "watch", "terms": ["bikini"], "outcome": "deny", "shadow": True},
    ]},
    "uses": {
        "txt2img": {
            "input": {},
            "output": {
                "nsfw": [
                    {"model": "fake", "labels": {"unsafe": {"deny": 0.8, "review": 0.5}}},
                    {"model": "shadowed", "labels": {"unsafe": {"deny": 0.1}}, "shadow": True},
                    {"model": "other", "labels": {"unsafe": {"deny": 0.8}}, "fail_open": True},
                ],
                "ensembles": [{"name": "avg", "members": [{"model": "fake", "label": "suggestive"},
                                                          {"model": "other", "label": "suggestive"}],
                               "combine": "mean", "threshold": {"review": 0.6}}],
            },
        },
        "img2img": {"allow_redact": True, "input": {"faces": {"without_consent": "redact"}},
                    "output": {"faces": {"without_consent": "redact"}}},
        "face_swap": {"input": {"faces": {"unmatched": "deny"}}},
    },
})


def facts(**kw: object) -> Facts:
    base = Facts(stage="output", use="txt2img", tenant="acme", end_user="u1", now=NOW, media_count=1)
    return replace(base, **kw)  # type: ignore[arg-type]


def nsfw(model: str, **scores: float) -> NsfwFact:
    return NsfwFact(0, model, "fake", "fake-1", dict(scores))


def grant(gid: str = "g1", **kw: object) -> GrantFact:
    base = GrantFact(gid, "s1", "acme", None, ("txt2img", "img2img"), NOW - timedelta(days=1), None, None)
    return replace(base, **kw)  # type: ignore[arg-type]


FACE_S1 = FaceFact(0, (10, 10, 50, 50), 0.9, (FaceMatch("s1", 0.95),))
S1 = {"s1": SubjectFact("s1", False)}

CASES = [
    ("clean image allows", facts(nsfw=(nsfw("fake", unsafe=0.01),)), "allow", "default"),
    ("score over deny threshold denies", facts(nsfw=(nsfw("fake", unsafe=0.9),)), "deny", "nsfw.fake.unsafe"),
    ("score at deny threshold denies", facts(nsfw=(nsfw("fake", unsafe=0.8),)), "deny", "nsfw.fake.unsafe"),
    ("score between review and deny reviews", facts(nsfw=(nsfw("fake", unsafe=0.6),)), "review", "nsfw.fake.unsafe"),
    ("shadow deny leaves allow", facts(nsfw=(nsfw("shadowed", unsafe=0.99),)), "allow", "default"),
    ("ensemble mean over threshold reviews",
     facts(nsfw=(nsfw("fake", suggestive=0.7), nsfw("other", suggestive=0.6))), "review", "ensemble.avg"),
    ("ensemble mean below threshold allows",
     facts(nsfw=(nsfw("fake", suggestive=0.7), nsfw("other", suggestive=0.1))), "allow", "default"),
    ("unknown use denies", facts(use="voice_clone"), "deny", "use.unknown"),
    ("stage without rules denies", facts(use="face_swap", stage="output"), "deny", "face_swap.output"),
    ("model failure denies", facts(failures=(ModelFailure("nsfw.fake", "fake", "boom"),)), "deny", "failed"),
    ("fail-open model failure allows",
     facts(failures=(ModelFailure("nsfw.other", "other", "boom"),)), "allow", "fail_open"),
    ("consent failure denies even with fail-open elsewhere",
     facts(failures=(ModelFailure("consent", "registry", "down"),)), "deny", "consent.failed"),
    ("enrolled face without grant denies", facts(faces=(FACE_S1,), subjects=S1), "deny", "consent.face"),
    ("enrolled face with grant allows",
     facts(faces=(FACE_S1,), subjects=S1, grants={"s1": (grant(),)}), "allow", "default"),
    ("grant for another tenant denies",
     facts(faces=(FACE_S1,), subjects=S1, grants={"s1": (grant(grantee_tenant="other"),)}), "deny", "no_grant"),
    ("grant for another use denies",
     facts(faces=(FACE_S1,), subjects=S1, grants={"s1": (grant(uses=("img2img",)),)}), "deny", "no_grant"),
    ("grant for another end user denies",
     facts(faces=(FACE_S1,), subjects=S1, grants={"s1": (grant(grantee_end_user="u2"),)}), "deny", "no_grant"),
    ("grant for this end user allows",
     facts(faces=(FACE_S1,), subjects=S1, grants={"s1": (grant(grantee_end_user="u1"),)}), "allow", "default"),
    ("expired grant denies as expired",
     facts(faces=(FACE_S1,), subjects=S1, grants={"s1": (grant(expires_at=NOW - timedelta(seconds=1)),)}),
     "deny", "expired"),
    ("grant expiring exactly now is expired",
     facts(faces=(FACE_S1,), subjects=S1, grants={"s1": (grant(expires_at=NOW),)}), "deny", "expired"),
    ("revoked grant denies as revoked",
     facts(faces=(FACE_S1,), subjects=S1, grants={"s1": (grant(revoked_at=NOW - timedelta(seconds=1)),)}),
     "deny", "revoked"),
    ("grant not yet valid denies",
     facts(faces=(FACE_S1,), subjects=S1, grants={"s1": (grant(valid_from=NOW + timedelta(hours=1)),)}),
     "deny", "no_grant"),
    ("protected subject without grant denies",
     facts(faces=(FACE_S1,), subjects={"s1": SubjectFact("s1", True)}), "deny", "protected"),
    ("protected subject with a grant allows",
     facts(faces=(FACE_S1,), subjects={"s1": SubjectFact("s1", True)}, grants={"s1": (grant(),)}), "allow", "default"),
    ("subject erased between match and decision is protected",
     facts(faces=(FACE_S1,), subjects={}), "deny", "protected"),
    ("face matching two subjects takes the strictest",
     facts(faces=(FaceFact(0, (0, 0, 9, 9), 0.9, (FaceMatch("s1", 0.9), FaceMatch("s2", 0.85))),),
           subjects={**S1, "s2": SubjectFact("s2", False)}, grants={"s1": (grant(),)}), "deny", "no_grant"),
    ("unmatched face allowed by default", facts(faces=(FaceFact(0, (0, 0, 9, 9), 0.9),)), "allow", "default"),
    ("unmatched face on face_swap input denies",
     facts(use="face_swap", stage="input", faces=(FaceFact(0, (0, 0, 9, 9), 0.9),)), "deny", "faces.unmatched"),
    ("redact gives allow with blur",
     facts(use="img2img", faces=(FACE_S1,), subjects=S1), "allow", "consent.face"),
    ("redact on video is deny",
     facts(use="img2img", faces=(FACE_S1,), subjects=S1, media_kind="video"), "deny", "consent.face"),
    ("redact loses to deny", facts(use="img2img", faces=(FACE_S1,), subjects={"s1": SubjectFact("s1", True)}),
     "deny", "protected"),
    ("named subject without grant denies", facts(names=(NameFact("s1", "zoe"),), subjects=S1), "deny", "consent.name"),
    ("named subject with grant allows",
     facts(names=(NameFact("s1", "zoe"),), subjects=S1, grants={"s1": (grant(),)}), "allow", "default"),
    ("hash hit denies", facts(hash_hits=(HashHit(0, "s1", 12),)), "deny", "hash_list"),
    ("prompt term denies (accent-insensitive)", facts(prompt="please NUDIFY this photo"), "deny", "prompt.nudify"),
    ("prompt term with accent folded", facts(prompt="a portrait of zoe"), "deny", "prompt.nudify"),
    ("prompt term needs a word boundary", facts(prompt="nudifying is not the term"), "allow", "default"),
    ("prompt regex reviews", facts(prompt="red Lingerie catalogue"), "review", "prompt.borderline"),
    ("shadow prompt rule does not change the verdict", facts(prompt="a bikini"), "allow", "default"),
    ("deny beats review", facts(prompt="lingerie nudify"), "deny", "prompt.nudify"),
]


@pytest.mark.parametrize(("name", "given", "expected", "rule_part"), CASES, ids=[c[0] for c in CASES])
def test_decide_table(name: str, given: Facts, expected: str, rule_part: str) -> None:
    verdict = decide(POLICY, given)
    assert verdict.decision == expected, verdict.reasons
    assert any(rule_part in r.rule or rule_part in r.detail for r in verdict.reasons), verdict.reasons


def test_shadow_is_recorded_not_enforced() -> None:
    verdict = decide(POLICY, facts(nsfw=(nsfw("shadowed", unsafe=0.99),), prompt="a bikini"))
    assert verdict.decision == "allow"
    outcomes = {s["rule"]: s["outcome"] for s in verdict.shadow}
    assert outcomes["txt2img.output.nsfw.shadowed.unsafe"] == "deny"
    assert outcomes["prompt.watch"] == "deny"


def test_redact_obligation_names_the_face() -> None:
    verdict = decide(POLICY, facts(use="img2img", faces=(FACE_S1,), subjects=S1))
    assert verdict.obligations["blur"] == [{"media_index": 0, "bbox": [10, 10, 50, 50]}]


def test_output_allow_carries_watermark_and_sign() -> None:
    verdict = decide(POLICY, facts())
    assert verdict.obligations["sign"] is True
    assert verdict.obligations["watermark"]["method"] == "tileSync"  # the default mark
    assert "watermark" not in decide(POLICY, facts(stage="input")).obligations


def test_granted_faces_report_grant_ids() -> None:
    verdict = decide(POLICY, facts(faces=(FACE_S1,), subjects=S1, grants={"s1": (grant("g9"),)}))
    assert verdict.grant_ids == ("g9",)
    assert verdict.face_consent[0].state == "granted"


@pytest.mark.parametrize(("outcomes", "expected"), [
    ([], "allow"), (["allow", "redact"], "redact"), (["redact", "review"], "review"),
    (["review", "deny", "allow"], "deny"),
])
def test_precedence(outcomes: list[str], expected: str) -> None:
    assert strictest(outcomes) == expected


def test_decide_is_deterministic() -> None:
    given = facts(nsfw=(nsfw("fake", unsafe=0.6),), prompt="lingerie")
    assert decide(POLICY, given) == decide(POLICY, given)


INHERITED_S1 = (InheritedFact("s1", "face", "in1"),)


@pytest.mark.parametrize("label,kw,decision,rules,grant_ids", [
    ("inherited subject with a valid grant allows, under that grant",
     {"grants": {"s1": (grant(),)}}, "allow", ["default"], ["g1"]),
    ("inherited subject without a grant denies", {"grants": {}}, "deny", ["txt2img.output.consent.inherited"], []),
    ("inherited subject whose grant was revoked denies",
     {"grants": {"s1": (grant(revoked_at=NOW - timedelta(minutes=1)),)}}, "deny",
     ["txt2img.output.consent.inherited"], []),
    ("inherited protected subject denies", {"subjects": {"s1": SubjectFact("s1", True)}}, "deny",
     ["txt2img.output.consent.inherited"], []),
    ("redact cannot blur an inherited subject: deny", {"use": "img2img"}, "deny",
     ["img2img.output.consent.inherited"], []),
])
def test_inherited_identities_need_their_grant(label: str, kw: dict[str, object], decision: str, rules: list[str],
                                               grant_ids: list[str]) -> None:
    """Issue #15.2: the subjects an output's input decision found (no face of theirs in the render needed)."""
    verdict = decide(POLICY, facts(**{"subjects": S1, "inherited": INHERITED_S1, **kw}))
    assert verdict.decision == decision, label
    assert [r.rule for r in verdict.reasons] == rules, label
    assert list(verdict.grant_ids) == grant_ids, label
    assert [c.state for c in verdict.inherited_consent] == (["granted"] if grant_ids else [
        "protected" if "protected" in label else "revoked" if "revoked" in label else "no_grant"]), label
