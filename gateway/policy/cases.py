"""Why: policies are tested like code (as `opa test` does): YAML cases under `policies/tests/`
give facts and the expected decision and reasons; `consentgate policy test` runs them in CI
without loading a single model, because `decide()` is pure.

A case file:

    policy: default            # policy file name (default: default)
    tenant: acme               # optional: test the tenant's overlay
    cases:
      - name: explicit render denied
        facts:                 # see `facts_from_yaml` for every field
          stage: output
          use: txt2img
          nsfw: [{model: opennsfw, scores: {nsfw: 0.93}}]
        expect:
          decision: deny
          reasons: [txt2img.output.nsfw.opennsfw.nsfw]   # rule ids that must appear (prefix match)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from gateway.decision import (
    FaceFact,
    FaceMatch,
    Facts,
    GrantFact,
    HashHit,
    ModelFailure,
    NameFact,
    NsfwFact,
    SubjectFact,
    VoiceFact,
    decide,
)
from gateway.policy.loader import PolicyBundle

DEFAULT_NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _time(value: Any, now: datetime) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    if text.startswith(("+", "-")) and text[-1] in "smhd":  # relative: "-1d", "+2h"
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[text[-1]]
        return now + timedelta(**{unit: float(text[:-1])})
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def facts_from_yaml(data: dict[str, Any]) -> Facts:
    now = _time(data.get("now"), DEFAULT_NOW) or DEFAULT_NOW
    nsfw = tuple(
        NsfwFact(int(n.get("media_index", 0)), n["model"], n.get("adapter", n["model"]), n.get("version", "test"),
                 {k: float(v) for k, v in n["scores"].items()}, n.get("frame"), n.get("t"))
        for n in data.get("nsfw", [])
    )
    faces = tuple(
        FaceFact(int(f.get("media_index", 0)), tuple(f.get("bbox", (0, 0, 100, 100))), float(f.get("det_score", 0.99)),
                 tuple(FaceMatch(m["subject"], float(m.get("similarity", 0.95))) for m in f.get("matches", [])),
                 unidentified=f.get("unidentified"))
        for f in data.get("faces", [])
    )
    subjects = {sid: SubjectFact(sid, bool((s or {}).get("protected", False)))
                for sid, s in (data.get("subjects") or {}).items()}
    grants: dict[str, tuple[GrantFact, ...]] = {}
    for sid, items in (data.get("grants") or {}).items():
        grants[sid] = tuple(
            GrantFact(g.get("id", f"g-{sid}-{i}"), sid, g.get("tenant", data.get("tenant", "tenant")),
                      g.get("end_user"), tuple(g.get("uses", [])),
                      _time(g.get("valid_from"), now) or now - timedelta(days=1),
                      _time(g.get("expires_at"), now), _time(g.get("revoked_at"), now))
            for i, g in enumerate(items)
        )
    return Facts(
        stage=data.get("stage", "input"), use=data["use"], tenant=data.get("tenant", "tenant"),
        end_user=data.get("end_user"), now=now, media_count=int(data.get("media_count", 1 if nsfw or faces else 0)),
        prompt=data.get("prompt"), nsfw=nsfw, faces=faces,
        names=tuple(NameFact(n["subject"], n.get("text", "")) for n in data.get("names", [])),
        concepts={k: float(v) for k, v in (data.get("concepts") or {}).items()},
        hash_hits=tuple(HashHit(int(h.get("media_index", 0)), h["subject"], int(h["distance"]))
                        for h in data.get("hash_hits", [])),
        subjects=subjects, grants=grants,
        failures=tuple(ModelFailure(f["check"], f.get("model", "?"), f.get("message", "failed"))
                       for f in data.get("failures", [])),
        media_kind=data.get("media_kind", "image"),
        voices=tuple(
            VoiceFact(int(v.get("media_index", 0)), float(v.get("start", 0.0)), float(v.get("end", 3.0)),
                      tuple(FaceMatch(m["subject"], float(m.get("similarity", 0.9))) for m in v.get("matches", [])),
                      unidentified=v.get("unidentified"))
            for v in data.get("voices", [])
        ),
    )


@dataclass
class CaseResult:
    file: str
    name: str
    ok: bool
    message: str
    # What decide() saw and did, so a failed case shows why (as `opa test --explain` does):
    fired: list[str] = field(default_factory=list)  # "[outcome] rule: detail" of every reason
    scores: list[str] = field(default_factory=list)  # "model: label=score, ..." of the nsfw facts
    tenant: str | None = None


def case_files(tests_dir: Path) -> list[Path]:
    return sorted(tests_dir.glob("*.y*ml"))


def tested_tenants(files: list[Path]) -> set[str]:
    """The tenants whose overlay some case file tests (`tenant:` at its top)."""
    out = set()
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("tenant"), str):
            out.add(doc["tenant"])
    return out


def run_cases(bundle: PolicyBundle, tests_dir: Path, files: list[Path] | None = None) -> list[CaseResult]:
    """Run the cases of FILES (default: every case file of TESTS_DIR) that target BUNDLE's policy."""
    results: list[CaseResult] = []
    for path in files if files is not None else case_files(tests_dir):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            results.append(CaseResult(path.name, "(file)", False, f"YAML error: {exc}"))
            continue
        wanted_policy = doc.get("policy", bundle.policy.name)
        if wanted_policy != bundle.policy.name:
            continue  # cases for another policy file of the directory
        tenant = doc.get("tenant")
        if tenant is not None:
            policy = bundle.overlays.get(tenant)
            if policy is None:
                results.append(CaseResult(path.name, "(file)", False, f"no overlay for tenant {tenant!r}"))
                continue
        else:
            policy = bundle.policy
        for i, case in enumerate(doc.get("cases", [])):
            name = case.get("name", f"case {i}")
            try:
                facts_data = dict(case["facts"])
                if tenant is not None:
                    facts_data.setdefault("tenant", tenant)
                verdict = decide(policy, facts_from_yaml(facts_data))
            except (KeyError, TypeError, ValueError) as exc:
                results.append(CaseResult(path.name, name, False, f"bad case: {exc!r}"))
                continue
            expect = case.get("expect", {})
            problems = []
            if "decision" in expect and verdict.decision != expect["decision"]:
                problems.append(f"decision {verdict.decision}, expected {expect['decision']}")
            rules = [r.rule for r in verdict.reasons]
            for wanted in expect.get("reasons", []):
                if not any(r.startswith(wanted) for r in rules):
                    problems.append(f"reason {wanted!r} missing (got {rules})")
            for unwanted in expect.get("not_reasons", []):
                if any(r.startswith(unwanted) for r in rules):
                    problems.append(f"reason {unwanted!r} present")
            if "blur" in expect and len(verdict.obligations.get("blur", [])) != expect["blur"]:
                problems.append(f"blur obligations {verdict.obligations.get('blur', [])}, expected {expect['blur']}")
            facts = facts_from_yaml(facts_data)
            results.append(CaseResult(
                path.name, name, not problems, "; ".join(problems) or "ok",
                fired=[f"[{r.outcome}] {r.rule}: {r.detail}" for r in verdict.reasons],
                scores=[f"{f.model}: " + ", ".join(f"{k}={v:.3f}" for k, v in sorted(f.scores.items()))
                        for f in facts.nsfw],
                tenant=tenant))
    return results
