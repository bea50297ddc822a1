"""Why: "an overlay may only tighten" must be a precise, tested rule, not a hope. This module
lists every way a candidate policy is looser than a base, as (setting path, why) pairs."""

from __future__ import annotations

from gateway.policy.schema import LabelThreshold, Policy, StageRules

_OUTCOME = {"allow": 0, "redact": 1, "review": 2, "deny": 3}


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
              or (other_c.shadow and not concept.shadow)):
            out.append((where, "concept weakened"))
    if base.prompt.names and not cand.prompt.names:
        out.append(("prompt.names", "name matching switched off"))
    if base.obligations.watermark is not None and cand.obligations.watermark is None:
        out.append(("obligations.watermark", "watermark removed"))
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
    return out
