"""Why: `decide(policy, facts) -> Verdict` is the whole judgement of the gateway, kept pure (no
I/O, no clock: the time is a fact) so that every decision can be replayed from its record and
policies can be tested as tables of facts → expected verdict.

Outcomes combine by precedence deny > review > redact > allow. `redact` is not a verdict: it
gives `allow` with a `blur` obligation on the faces concerned. A check that failed denies unless
the policy opted that single check into fail-open (the reason records it either way).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from gateway.decision.facts import FaceFact, Facts, GrantFact, NsfwFact
from gateway.decision.patterns import rule_regex
from gateway.decision.verdict import FaceConsent, Reason, Verdict, strictest
from gateway.policy.schema import ConsentSettings, LabelThreshold, Policy, StageRules

_STATE_RANK = {"granted": 1, "no_grant": 2, "expired": 3, "revoked": 4, "protected": 5}


def decide(policy: Policy, facts: Facts) -> Verdict:
    use_policy = policy.uses.get(facts.use)
    if use_policy is None:
        return _deny_only("use.unknown", f"use {facts.use!r} is not allowed by policy {policy.name!r}")
    stage: StageRules | None = getattr(use_policy, facts.stage, None) if facts.stage in ("input", "output") else None
    if stage is None:
        return _deny_only(
            f"{facts.use}.{facts.stage}",
            f"policy {policy.name!r} has no rules for stage {facts.stage!r} of use {facts.use!r}",
        )
    prefix = f"{facts.use}.{facts.stage}"
    reasons: list[Reason] = []
    shadow: list[dict[str, Any]] = []

    _failures(facts, stage, prefix, reasons)
    _nsfw(facts, stage, prefix, reasons, shadow)
    _ensembles(facts, stage, prefix, reasons, shadow)
    face_consent, blur, face_grants = _faces(facts, stage, use_policy.allow_redact, prefix, reasons, policy.consent)
    _required_faces(facts, stage, face_consent, prefix, reasons)
    name_consent, name_grants = _names(facts, stage, prefix, reasons)
    voice_consent, voice_grants = _voices(facts, stage, prefix, reasons)
    inherited_consent, inherited_grants = _inherited(facts, stage, prefix, reasons)
    if stage.prompt:
        _prompt(policy, facts, reasons, shadow)
    for hit in facts.hash_hits:
        reasons.append(
            Reason("hash_list", "deny", f"media {hit.media_index} is within {hit.distance} bits of a listed hash")
        )

    outcome = strictest([r.outcome for r in reasons])
    decision = "allow" if outcome in ("allow", "redact") else outcome
    if not reasons:
        reasons.append(Reason("default", "allow", "no rule fired"))
    obligations: dict[str, Any] = {}
    if decision == "allow":
        if blur:
            obligations["blur"] = blur
        if facts.stage == "output":
            wm = policy.obligations.watermark
            if wm is not None:
                obligations["watermark"] = {"method": wm.method, "strength": wm.strength}
            if policy.obligations.sign:
                obligations["sign"] = True
    grant_ids = tuple(sorted(set(face_grants) | set(name_grants) | set(voice_grants) | set(inherited_grants)))
    return Verdict(
        decision=decision,  # type: ignore[arg-type]
        reasons=tuple(reasons),
        obligations=obligations,
        face_consent=tuple(face_consent),
        name_consent=tuple(name_consent),
        shadow=tuple(shadow),
        grant_ids=grant_ids,
        voice_consent=tuple(voice_consent),
        inherited_consent=tuple(inherited_consent),
    )


def _deny_only(rule: str, detail: str) -> Verdict:
    return Verdict(decision="deny", reasons=(Reason(rule, "deny", detail),), obligations={})


def _failures(facts: Facts, stage: StageRules, prefix: str, reasons: list[Reason]) -> None:
    fail_open = {c.model for c in stage.nsfw if c.fail_open}
    for failure in facts.failures:
        if failure.check == f"nsfw.{failure.model}" and failure.model in fail_open:
            reasons.append(
                Reason(
                    f"{prefix}.{failure.check}.fail_open",
                    "allow",
                    f"check {failure.check} (model {failure.model}) failed: {failure.message}; "
                    "the policy opts this check into fail-open",
                )
            )
        else:
            reasons.append(
                Reason(
                    f"{prefix}.{failure.check}.failed",
                    "deny",
                    f"{facts.stage} stage check {failure.check} (model {failure.model}) failed: {failure.message}",
                )
            )


def _threshold(score: float, thr: LabelThreshold) -> tuple[str, float | None]:
    if thr.deny is not None and score >= thr.deny:
        return "deny", thr.deny
    if thr.review is not None and score >= thr.review:
        return "review", thr.review
    return "allow", None


def _where(fact: NsfwFact) -> str:
    where = f"media {fact.media_index}"
    if fact.t is not None:
        where += f" at t={fact.t:.2f}s (frame {fact.frame})"
    return where


def _nsfw(
    facts: Facts, stage: StageRules, prefix: str, reasons: list[Reason], shadow: list[dict[str, Any]]
) -> None:
    for check in stage.nsfw:
        found = [f for f in facts.nsfw if f.model == check.model]
        for label, thr in check.labels.items():
            scored = [(f.scores[label], f) for f in found if label in f.scores]
            if not scored:
                continue
            score, fact = max(scored, key=lambda item: item[0])
            outcome, limit = _threshold(score, thr)
            rule = f"{prefix}.nsfw.{check.model}.{label}"
            if check.shadow:
                shadow.append(
                    {"rule": rule, "model": check.model, "model_version": fact.model_version, "label": label,
                     "score": round(score, 6), "outcome": outcome}
                )
            elif outcome != "allow":
                reasons.append(
                    Reason(rule, outcome, f"{label} score {score:.3f} >= {outcome} threshold {limit} ({_where(fact)})")
                )


def _ensembles(
    facts: Facts, stage: StageRules, prefix: str, reasons: list[Reason], shadow: list[dict[str, Any]]
) -> None:
    for ens in stage.ensembles:
        per_item: dict[tuple[int, int | None], list[float]] = {}
        for member in ens.members:
            for fact in facts.nsfw:
                if fact.model == member.model and member.label in fact.scores:
                    per_item.setdefault((fact.media_index, fact.frame), []).append(fact.scores[member.label])
        if not per_item:
            continue
        combined = {
            key: (max(vals) if ens.combine == "max" else sum(vals) / len(vals)) for key, vals in per_item.items()
        }
        key, score = max(combined.items(), key=lambda item: item[1])
        outcome, limit = _threshold(score, ens.threshold)
        rule = f"{prefix}.ensemble.{ens.name}"
        if ens.shadow:
            shadow.append({"rule": rule, "label": ens.name, "score": round(score, 6), "outcome": outcome})
        elif outcome != "allow":
            reasons.append(
                Reason(rule, outcome, f"{ens.combine} of {len(ens.members)} models {score:.3f} >= {outcome} "
                       f"threshold {limit} (media {key[0]})")
            )


def grant_is_valid(grant: GrantFact, facts: Facts) -> bool:
    return (
        grant.grantee_tenant == facts.tenant
        and (grant.grantee_end_user is None or grant.grantee_end_user == facts.end_user)
        and facts.use in grant.uses
        and grant.valid_from <= facts.now
        and (grant.expires_at is None or facts.now < grant.expires_at)
        and (grant.revoked_at is None or grant.revoked_at > facts.now)
    )


def consent_state(subject_id: str, facts: Facts) -> FaceConsent:
    """The consent state of one matched subject for this request (the database is the authority:
    grants arrive as facts read at decision time)."""
    grants = facts.grants.get(subject_id, ())
    for grant in grants:
        if grant_is_valid(grant, facts):
            return FaceConsent("granted", grant.id, subject_id)
    subject = facts.subjects.get(subject_id)
    if subject is None or subject.protected:
        # An unknown subject (erased between match and decision) is treated as protected: fail closed.
        return FaceConsent("protected", None, subject_id)
    relevant = [
        g for g in grants
        if g.grantee_tenant == facts.tenant
        and (g.grantee_end_user is None or g.grantee_end_user == facts.end_user)
        and facts.use in g.uses
    ]
    if any(g.revoked_at is not None and g.revoked_at <= facts.now for g in relevant):
        return FaceConsent("revoked", None, subject_id)
    if any(g.expires_at is not None and g.expires_at <= facts.now for g in relevant):
        return FaceConsent("expired", None, subject_id)
    return FaceConsent("no_grant", None, subject_id)


def _strictest_consent(subject_ids: list[str], facts: Facts) -> FaceConsent:
    states = [consent_state(s, facts) for s in subject_ids]
    return max(states, key=lambda c: _STATE_RANK[c.state])


def _faces(
    facts: Facts, stage: StageRules, allow_redact: bool, prefix: str, reasons: list[Reason],
    consent_settings: ConsentSettings,
) -> tuple[list[FaceConsent], list[dict[str, Any]], list[str]]:
    consents: list[FaceConsent] = []
    blur: list[dict[str, Any]] = []
    grants: list[str] = []
    unidentified_outcome = stage.faces.unidentified or consent_settings.unidentified
    min_px = stage.faces.min_face_px or consent_settings.min_face_px
    for i, face in enumerate(facts.faces):
        if not face.matches and face.unidentified is not None:
            consents.append(FaceConsent("unidentified"))
            if unidentified_outcome != "allow" and face.size_px >= min_px:
                reasons.append(
                    Reason(f"{prefix}.faces.unidentified", unidentified_outcome,
                           f"face {i} in media {face.media_index}{_face_time(face)} ({face.size_px} px) is seen "
                           f"but cannot be identified: {face.unidentified}; consent cannot be shown")
                )
            continue
        if not face.matches:
            consents.append(FaceConsent("no_match"))
            if stage.faces.unmatched != "allow":
                reasons.append(
                    Reason(f"{prefix}.faces.unmatched", stage.faces.unmatched,
                           f"face {i} in media {face.media_index} matches no enrolled subject; consent cannot be shown")
                )
            continue
        consent = _strictest_consent([m.subject_id for m in face.matches], facts)
        consents.append(consent)
        if consent.state == "granted":
            if consent.grant_id:
                grants.append(consent.grant_id)
            continue
        outcome = _consent_outcome(consent.state, stage.faces.without_consent, allow_redact, facts.media_kind)
        reasons.append(
            Reason(f"{prefix}.consent.face", outcome,
                   f"face {i} in media {face.media_index}{_face_time(face)} matches an enrolled subject; "
                   f"consent state {consent.state}")
        )
        if outcome == "redact":
            blur.append({"media_index": face.media_index, "bbox": list(face.bbox)})
    return consents, blur, grants


def required_faces(stage: StageRules, use: str, stage_name: str) -> int:
    """How many identifiable faces each media part must carry: the policy's `require_faces`, else 1
    for face_swap inputs (the reference must show whose face is used) and 0 otherwise."""
    if stage.faces.require_faces is not None:
        return stage.faces.require_faces
    return 1 if (use == "face_swap" and stage_name == "input") else 0


def _required_faces(
    facts: Facts, stage: StageRules, consents: list[FaceConsent], prefix: str, reasons: list[Reason]
) -> None:
    need = required_faces(stage, facts.use, facts.stage)
    if need <= 0 or facts.media_count <= 0:
        return
    counts = dict.fromkeys(range(facts.media_count), 0)
    for face, consent in zip(facts.faces, consents, strict=True):
        if consent.state != "unidentified" and face.media_index in counts:
            counts[face.media_index] += 1
    for media_index, count in counts.items():
        if count < need:
            seen = sum(1 for f in facts.faces if f.media_index == media_index)
            reasons.append(
                Reason(f"{prefix}.faces.required", "deny",
                       f"media {media_index} carries {count} identifiable face(s) ({seen} seen); "
                       f"use {facts.use!r} needs at least {need} at stage {facts.stage!r}")
            )


def _face_time(face: FaceFact) -> str:
    return f" at t={face.t:.2f}s" if face.t is not None else ""


def _consent_outcome(state: str, without_consent: str, allow_redact: bool, media_kind: str) -> str:
    if state == "protected":
        return "deny"
    if without_consent == "redact" and (not allow_redact or media_kind != "image"):
        return "deny"  # redaction of video faces does not exist yet: fail closed
    return without_consent


def _voices(facts: Facts, stage: StageRules, prefix: str, reasons: list[Reason]) -> tuple[list[FaceConsent], list[str]]:
    """Voices are likenesses with the same rules as faces (issue #18): a voice that matches an enrolled
    subject needs a valid grant (`faces.without_consent` otherwise; voices cannot be redacted, so redact
    denies); a voice that matches nobody follows `faces.unmatched`. Speech too short to identify is
    recorded as `unidentified` and not ruled on (like a face below `min_face_px`)."""
    consents: list[FaceConsent] = []
    grants: list[str] = []
    for i, voice in enumerate(facts.voices):
        where = f"voice {i} in media {voice.media_index} at {voice.start:.2f}-{voice.end:.2f}s"
        if not voice.matches and voice.unidentified is not None:
            consents.append(FaceConsent("unidentified"))
            continue
        if not voice.matches:
            consents.append(FaceConsent("no_match"))
            if stage.faces.unmatched != "allow":
                reasons.append(Reason(f"{prefix}.voices.unmatched", stage.faces.unmatched,
                                      f"{where} matches no enrolled voice; consent cannot be shown"))
            continue
        _rule_on(_strictest_consent([m.subject_id for m in voice.matches], facts), stage,
                 f"{prefix}.consent.voice", f"{where} matches an enrolled voice", consents, grants, reasons)
    return consents, grants


def _rule_on(consent: FaceConsent, stage: StageRules, rule: str, detail: str, consents: list[FaceConsent],
             grants: list[str], reasons: list[Reason]) -> None:
    """Record a subject's consent state: a valid grant is collected; any other state gets `rule` with
    `faces.without_consent` (protected subjects, and redact where nothing can be blurred: deny)."""
    consents.append(consent)
    if consent.state == "granted":
        if consent.grant_id:
            grants.append(consent.grant_id)
        return
    outcome = "deny" if consent.state == "protected" or stage.faces.without_consent == "redact" else (
        stage.faces.without_consent
    )
    reasons.append(Reason(rule, outcome, f"{detail}; consent state {consent.state}"))


def _inherited(facts: Facts, stage: StageRules, prefix: str,
               reasons: list[Reason]) -> tuple[list[FaceConsent], list[str]]:
    """Identities inherited from the input decision (issue #15.2): the render was made from a reference
    that showed (or named, or voiced) these subjects, so each needs a valid grant for this request — the
    same rule as a matched face (`faces.without_consent`; nothing to blur, so redact denies), whether or
    not the render itself still matches them."""
    consents: list[FaceConsent] = []
    grants: list[str] = []
    for item in facts.inherited:
        _rule_on(consent_state(item.subject_id, facts), stage, f"{prefix}.consent.inherited",
                 f"the input decision {item.input_decision_id} found an enrolled subject ({item.source}) "
                 "in the reference this render was made from", consents, grants, reasons)
    return consents, grants


def _names(facts: Facts, stage: StageRules, prefix: str, reasons: list[Reason]) -> tuple[list[FaceConsent], list[str]]:
    consents: list[FaceConsent] = []
    grants: list[str] = []
    for name in facts.names:
        _rule_on(consent_state(name.subject_id, facts), stage, f"{prefix}.consent.name",
                 "the prompt names an enrolled subject", consents, grants, reasons)
    return consents, grants


def normalise_text(text: str) -> str:
    """Lower-case and strip accents so 'Zoë' and 'ZOE' compare equal."""
    if text.isascii():  # the common case, and a long prompt's: nothing to decompose (#15.1)
        return text.casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _prompt(policy: Policy, facts: Facts, reasons: list[Reason], shadow: list[dict[str, Any]]) -> None:
    if not facts.prompt:
        return
    text = normalise_text(facts.prompt)
    for rule in policy.prompt.rules:
        hit: str | None = None
        for term in rule.terms:
            if re.search(rf"(?<!\w){re.escape(normalise_text(term))}(?!\w)", text):
                hit = f"term {term!r}"
                break
        if hit is None:
            for pattern in rule.regexes:
                if rule_regex(pattern).search(text):
                    hit = f"regex {pattern!r}"
                    break
        if hit is None:
            continue
        rid = f"prompt.{rule.id}"
        if rule.shadow:
            shadow.append({"rule": rid, "label": rule.id, "outcome": rule.outcome})
        else:
            reasons.append(Reason(rid, rule.outcome, f"prompt matches {hit}"))
    for concept in policy.prompt.concepts:
        similarity = facts.concepts.get(concept.id)
        if similarity is None:
            continue
        outcome = concept.outcome if similarity >= concept.threshold else "allow"
        rid = f"prompt.concept.{concept.id}"
        if concept.shadow:
            shadow.append({"rule": rid, "label": concept.id, "score": round(similarity, 6), "outcome": outcome})
        elif outcome != "allow":
            reasons.append(
                Reason(rid, outcome, f"prompt similarity {similarity:.3f} >= threshold {concept.threshold}")
            )
