"""Why: "an overlay may only tighten" must be a precise, tested rule, not a hope. This module
lists every way a candidate policy is looser than a base, as (setting path, why) pairs.

Every field of the schema has a rule in `FIELD_RULES` (issue #15.3): either a defined "stricter"
order that `loosenings` checks, or `fixed` — any change is a loosening unless the base lists it under
`tenant_may_loosen.settings` — or it is a container, an item's identity, or not a setting at all.
`tests/policy/test_field_rules.py` walks the schema, so a new field without a rule fails the build."""

from __future__ import annotations

from gateway.policy.schema import LabelThreshold, Policy, StageRules

_OUTCOME = {"allow": 0, "redact": 1, "review": 2, "deny": 3}

# `Class.field` → its rule. "order: …" fields are compared by `loosenings` below (the text says which
# way is stricter); "fixed" fields may not change at all unless the base allows it; "container" fields
# hold models whose own fields have rules; "identity" names an item of a list; "free" is no setting.
FIELD_RULES: dict[str, str] = {
    "Policy.name": "free: a label",
    "Policy.description": "free: a label",
    "Policy.models": "container: a model changed under an alias is a loosening (fixed per alias)",
    "ModelSpec.adapter": "fixed",
    "ModelSpec.options": "fixed",
    "ModelSpec.timeout_s": "fixed",
    "Policy.consent": "container",
    "ConsentSettings.face_model": "fixed",
    "ConsentSettings.match_threshold": "order: lower is stricter (more matches)",
    "ConsentSettings.near_match_margin": "order: a lower match_threshold - margin is stricter (more near matches)",
    "ConsentSettings.unidentified": "order: deny > review > redact > allow",
    "ConsentSettings.min_face_px": "order: lower is stricter (more faces ruled on)",
    "ConsentSettings.face_proposals": "order: a superset is stricter (no detector removed)",
    "ConsentSettings.identify_min_px": "order: higher is stricter",
    "ConsentSettings.fail_open": "fixed (always false)",
    "ConsentSettings.voice_model": "fixed",
    "ConsentSettings.voice_match_threshold": "order: lower is stricter (more matches)",
    "Policy.prompt": "container",
    "PromptRules.rules": "order: no rule removed",
    "TermRule.id": "identity",
    "TermRule.terms": "order: a superset is stricter",
    "TermRule.regexes": "order: a superset is stricter",
    "TermRule.outcome": "order: deny > review > redact > allow",
    "TermRule.shadow": "order: false is stricter",
    "PromptRules.concepts": "order: no concept removed",
    "Concept.id": "identity",
    "Concept.examples": "order: a superset is stricter",
    "Concept.threshold": "order: lower is stricter",
    "Concept.outcome": "order: deny > review > redact > allow",
    "Concept.shadow": "order: false is stricter",
    "PromptRules.text_model": "fixed",
    "PromptRules.names": "order: true is stricter",
    "Policy.hash_list": "container",
    "HashListSettings.model": "fixed",
    "HashListSettings.max_distance": "order: higher is stricter (more hits)",
    "Policy.obligations": "container",
    "Obligations.watermark": "order: present is stricter than absent",
    "WatermarkSpec.method": "fixed",
    "WatermarkSpec.strength": "order: higher is stricter",
    "Obligations.sign": "order: true is stricter",
    "Policy.logging": "container",
    "LogMasking.prompt_text": "order: false is stricter",
    "Policy.video": "container",
    "VideoSettings.sample_fps": "order: higher is stricter",
    "VideoSettings.scene_cut_threshold": "order: lower is stricter",
    "VideoSettings.change_threshold": "order: lower is stricter",
    "VideoSettings.release_min_sample_fps": "order: higher is stricter",
    "VideoSettings.crf": "fixed",
    "VideoSettings.preset": "fixed",
    "VideoSettings.watermark_strength": "order: higher is stricter",
    "VideoSettings.overlap": "fixed",
    "VideoSettings.max_bytes": "order: lower is stricter",
    "VideoSettings.max_seconds": "order: lower is stricter",
    "VideoSettings.max_width": "order: lower is stricter",
    "VideoSettings.max_height": "order: lower is stricter",
    "VideoSettings.max_frames": "order: lower is stricter",
    "VideoSettings.sync_max_bytes": "order: lower is stricter",
    "VideoSettings.sync_max_seconds": "order: lower is stricter",
    "Policy.retention": "container",
    "RetentionSettings.enabled": "order: true is stricter",
    "RetentionSettings.sweep_interval_s": "order: lower is stricter",
    "RetentionSettings.face": "container",
    "RetentionSettings.voice": "container",
    "RetentionRule.max_age_days": "order: lower is stricter (none = unlimited)",
    "RetentionRule.max_idle_days": "order: lower is stricter (none = unlimited)",
    "RetentionRule.purpose_end": "order: true is stricter",
    "RetentionRule.grace_days": "order: lower is stricter",
    "RetentionRule.ceiling_days": "order: lower is stricter",
    "Policy.uses": "order: no use added (removing one denies it)",
    "UsePolicy.input": "order: no stage added",
    "UsePolicy.output": "order: no stage added",
    "UsePolicy.allow_redact": "order: false is stricter",
    "StageRules.nsfw": "order: no check removed",
    "NsfwCheck.model": "identity",
    "NsfwCheck.labels": "order: no label removed",
    "LabelThreshold.deny": "order: lower is stricter (none = never)",
    "LabelThreshold.review": "order: lower is stricter (none = never)",
    "NsfwCheck.shadow": "order: false is stricter",
    "NsfwCheck.fail_open": "order: false is stricter",
    "StageRules.ensembles": "order: no ensemble removed",
    "Ensemble.name": "identity",
    "Ensemble.members": "fixed",
    "EnsembleMember.model": "fixed",
    "EnsembleMember.label": "fixed",
    "Ensemble.combine": "order: max is stricter than mean",
    "Ensemble.threshold": "order: as LabelThreshold",
    "Ensemble.shadow": "order: false is stricter",
    "StageRules.faces": "container",
    "FaceRules.unmatched": "order: deny > review > redact > allow",
    "FaceRules.without_consent": "order: deny > review > redact",
    "FaceRules.unidentified": "order: deny > review > redact > allow (default: consent.unidentified)",
    "FaceRules.min_face_px": "order: lower is stricter (default: consent.min_face_px)",
    "FaceRules.require_faces": "order: higher is stricter",
    "StageRules.prompt": "order: true is stricter",
    "Policy.tenant_may_loosen": "container: only the base's list counts",
    "Overridable.settings": "fixed",
}


def _thr_looser(base: LabelThreshold, cand: LabelThreshold | None) -> str | None:
    if cand is None:
        return "threshold removed"
    for kind in ("deny", "review"):
        b, c = getattr(base, kind), getattr(cand, kind)
        if b is not None and (c is None or c > b):
            return f"{kind} threshold raised from {b} to {c}"
    return None


def _stage(path: str, base: StageRules, cand: StageRules, out: list[tuple[str, str]]) -> None:
    cand_checks = {c.model: c for c in cand.nsfw}
    for check in base.nsfw:
        other = cand_checks.get(check.model)
        where = f"{path}.nsfw.{check.model}"
        if other is None:
            out.append((where, "check removed"))
            continue
        if other.shadow and not check.shadow:
            out.append((where, "check moved to shadow"))
        if other.fail_open and not check.fail_open:
            out.append((where, "check made fail-open"))
        for label, thr in check.labels.items():
            why = _thr_looser(thr, other.labels.get(label))
            if why:
                out.append((f"{where}.{label}", why))
    cand_ens = {e.name: e for e in cand.ensembles}
    for ens in base.ensembles:
        other_ens = cand_ens.get(ens.name)
        where = f"{path}.ensembles.{ens.name}"
        if other_ens is None:
            out.append((where, "ensemble removed"))
            continue
        if other_ens.shadow and not ens.shadow:
            out.append((where, "ensemble moved to shadow"))
        if [m.model_dump() for m in other_ens.members] != [m.model_dump() for m in ens.members]:
            out.append((f"{where}.members", "ensemble members changed"))
        if ens.combine == "max" and other_ens.combine != "max":
            out.append((f"{where}.combine", f"combine {ens.combine} → {other_ens.combine} (a lower score)"))
        why = _thr_looser(ens.threshold, other_ens.threshold)
        if why:
            out.append((where, why))
    if _OUTCOME[cand.faces.unmatched] < _OUTCOME[base.faces.unmatched]:
        out.append((f"{path}.faces.unmatched", f"{base.faces.unmatched} → {cand.faces.unmatched}"))
    if _OUTCOME[cand.faces.without_consent] < _OUTCOME[base.faces.without_consent]:
        out.append((f"{path}.faces.without_consent",
                    f"{base.faces.without_consent} → {cand.faces.without_consent}"))
    if base.prompt and not cand.prompt:
        out.append((f"{path}.prompt", "prompt rules switched off"))


def _faces_looser(path: str, base: Policy, cand: Policy, b: StageRules, c: StageRules,
                  stage_name: str, use: str, out: list[tuple[str, str]]) -> None:
    """The unidentified-face and required-face rules, each resolved against its policy-wide default."""
    bu = b.faces.unidentified or base.consent.unidentified
    cu = c.faces.unidentified or cand.consent.unidentified
    if _OUTCOME[cu] < _OUTCOME[bu]:
        out.append((f"{path}.faces.unidentified", f"{bu} → {cu}"))
    if (c.faces.min_face_px or cand.consent.min_face_px) > (b.faces.min_face_px or base.consent.min_face_px):
        out.append((f"{path}.faces.min_face_px", "fewer unidentified faces ruled on"))
    default_need = 1 if (use == "face_swap" and stage_name == "input") else 0
    need_b = b.faces.require_faces if b.faces.require_faces is not None else default_need
    need_c = c.faces.require_faces if c.faces.require_faces is not None else default_need
    if need_c < need_b:
        out.append((f"{path}.faces.require_faces", f"{need_b} → {need_c}"))


def loosenings(base: Policy, cand: Policy) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for use in cand.uses:
        if use not in base.uses:
            out.append((f"uses.{use}", "use added"))
    for use, up in base.uses.items():
        other = cand.uses.get(use)
        if other is None:
            continue  # removing a use denies it: tighter
        if other.allow_redact and not up.allow_redact:
            out.append((f"uses.{use}.allow_redact", "redaction allowed"))
        for stage_name in ("input", "output"):
            b, c = getattr(up, stage_name), getattr(other, stage_name)
            if b is None and c is not None:
                out.append((f"uses.{use}.{stage_name}", "stage added"))
            elif b is not None and c is not None:
                _stage(f"uses.{use}.{stage_name}", b, c, out)
                _faces_looser(f"uses.{use}.{stage_name}", base, cand, b, c, stage_name, use, out)
    for alias, spec in base.models.items():
        if alias in cand.models and cand.models[alias] != spec:
            out.append((f"models.{alias}", "model changed"))
    if cand.consent.face_model != base.consent.face_model:
        out.append(("consent.face_model", "face model changed"))
    if cand.consent.match_threshold > base.consent.match_threshold:
        out.append(("consent.match_threshold", "match threshold raised (fewer matches)"))
    if (cand.consent.match_threshold - cand.consent.near_match_margin
            > base.consent.match_threshold - base.consent.near_match_margin):
        out.append(("consent.near_match_margin", "fewer near matches reviewed"))
    if not set(base.consent.face_proposals) <= set(cand.consent.face_proposals):
        out.append(("consent.face_proposals", "a face detector removed"))
    if cand.consent.identify_min_px < base.consent.identify_min_px:
        out.append(("consent.identify_min_px", "smaller unmatched faces count as nobody enrolled"))
    if cand.hash_list.max_distance < base.hash_list.max_distance:
        out.append(("hash_list.max_distance", "hash distance lowered (fewer hits)"))
    if cand.hash_list.model != base.hash_list.model:
        out.append(("hash_list.model", "hash model changed"))
    cand_rules = {r.id: r for r in cand.prompt.rules}
    for rule in base.prompt.rules:
        other_rule = cand_rules.get(rule.id)
        where = f"prompt.rules.{rule.id}"
        if other_rule is None:
            out.append((where, "rule removed"))
            continue
        if _OUTCOME[other_rule.outcome] < _OUTCOME[rule.outcome] or (other_rule.shadow and not rule.shadow):
            out.append((where, "rule outcome weakened"))
        if not set(rule.terms) <= set(other_rule.terms) or not set(rule.regexes) <= set(other_rule.regexes):
            out.append((where, "terms or regexes removed"))
    cand_concepts = {c.id: c for c in cand.prompt.concepts}
    for concept in base.prompt.concepts:
        other_c = cand_concepts.get(concept.id)
        where = f"prompt.concepts.{concept.id}"
        if other_c is None:
            out.append((where, "concept removed"))
        elif (other_c.threshold > concept.threshold or _OUTCOME[other_c.outcome] < _OUTCOME[concept.outcome]
              or (other_c.shadow and not concept.shadow) or not set(concept.examples) <= set(other_c.examples)):
            out.append((where, "concept weakened"))
    if cand.prompt.text_model != base.prompt.text_model:
        out.append(("prompt.text_model", "text model changed"))
    if cand.consent.voice_model != base.consent.voice_model:
        out.append(("consent.voice_model", "voice model changed"))
    if cand.consent.voice_match_threshold > base.consent.voice_match_threshold:
        out.append(("consent.voice_match_threshold", "voice match threshold raised (fewer matches)"))
    if cand.consent.min_face_px > base.consent.min_face_px:
        out.append(("consent.min_face_px", "fewer unidentified faces ruled on"))
    if _OUTCOME[cand.consent.unidentified] < _OUTCOME[base.consent.unidentified]:
        out.append(("consent.unidentified", f"{base.consent.unidentified} → {cand.consent.unidentified}"))
    if cand.tenant_may_loosen != base.tenant_may_loosen:
        out.append(("tenant_may_loosen", "only the base policy says what overlays may loosen"))
    if base.prompt.names and not cand.prompt.names:
        out.append(("prompt.names", "name matching switched off"))
    bw, cw = base.obligations.watermark, cand.obligations.watermark
    if bw is not None and cw is None:
        out.append(("obligations.watermark", "watermark removed"))
    elif bw is not None and cw is not None:
        if cw.method != bw.method:
            out.append(("obligations.watermark.method", f"watermark method {bw.method} → {cw.method}"))
        if cw.strength < bw.strength:
            out.append(("obligations.watermark.strength", "weaker watermark"))
    if base.obligations.sign and not cand.obligations.sign:
        out.append(("obligations.sign", "signing switched off"))
    if cand.logging.prompt_text and not base.logging.prompt_text:
        out.append(("logging.prompt_text", "prompt text logged"))
    bv, cv = base.video, cand.video
    if cv.sample_fps < bv.sample_fps:
        out.append(("video.sample_fps", "fewer frames checked"))
    if cv.scene_cut_threshold > bv.scene_cut_threshold:
        out.append(("video.scene_cut_threshold", "fewer scene cuts sampled"))
    if cv.change_threshold > bv.change_threshold:
        out.append(("video.change_threshold", "fewer changed frames sampled"))
    if cv.release_min_sample_fps < bv.release_min_sample_fps:
        out.append(("video.release_min_sample_fps", "fewer frames checked on release"))
    if cv.watermark_strength < bv.watermark_strength:
        out.append(("video.watermark_strength", "weaker video watermark"))
    for limit in ("max_bytes", "max_seconds", "max_width", "max_height", "max_frames", "sync_max_bytes",
                  "sync_max_seconds"):
        if getattr(cv, limit) > getattr(bv, limit):
            out.append((f"video.{limit}", "limit raised"))
    for fixed in ("crf", "preset", "overlap"):
        if getattr(cv, fixed) != getattr(bv, fixed):
            out.append((f"video.{fixed}", "changed (no stricter order)"))
    _retention(base, cand, out)
    return out


def _retention(base: Policy, cand: Policy, out: list[tuple[str, str]]) -> None:
    br, cr = base.retention, cand.retention
    if br.enabled and not cr.enabled:
        out.append(("retention.enabled", "retention sweeper switched off"))
    if cr.sweep_interval_s > br.sweep_interval_s:
        out.append(("retention.sweep_interval_s", "swept less often"))
    for kind in ("face", "voice"):
        b, c = getattr(br, kind), getattr(cr, kind)
        where = f"retention.{kind}"
        for limit in ("max_age_days", "max_idle_days"):
            bl, cl = getattr(b, limit), getattr(c, limit)
            if bl is not None and (cl is None or cl > bl):
                out.append((f"{where}.{limit}", "kept longer"))
        if b.purpose_end and not c.purpose_end:
            out.append((f"{where}.purpose_end", "kept after its purpose ended"))
        if c.grace_days > b.grace_days:
            out.append((f"{where}.grace_days", "kept longer"))
        if c.ceiling_days > b.ceiling_days:
            out.append((f"{where}.ceiling_days", "kept longer"))
