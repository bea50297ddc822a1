"""Why: swapping the model behind a policy is an everyday operation, so it has its own commands:
`consentgate models list` (what is registered, where its weights come from), `models calibrate`
(thresholds for a target false-positive / false-match rate on the operator's own labelled
images, printed as a policy snippet), `models compare` (a baseline and a candidate on the same
images, or the candidate's shadow findings from the audit log) and `models face-ready` (whether
every enrolled subject has templates for a face model, re-embedding first on request).

The library side of a face-model switch (`face_model_ready`, `switch_face_model`) lives in
`gateway.registry.switch`; policy activation calls `face_model_ready` so a policy naming a face
model whose templates are missing is refused instead of silently matching nobody.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli.common import DataDir, JsonOpt, echo_table, fail, load_settings, require_data_dir

models_app = typer.Typer(
    help="List, calibrate and compare model adapters; check a face-model switch.", no_args_is_help=True
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
PolicyOpt = Annotated[
    Path | None,
    typer.Option(
        "--policy", help="A policy file: resolves model aliases (adapter + options) and thresholds."
    ),
]
OptionsOpt = Annotated[
    str | None, typer.Option("--options", help="Adapter options as JSON (when not from --policy).")
]


# ---------------------------------------------------------------- model resolution
def _policy(path: Path | None) -> Any:
    if path is None:
        return None
    from gateway.policy.loader import PolicyError, parse_policy

    try:
        return parse_policy(path)
    except PolicyError as exc:
        raise fail("\n".join(exc.errors)) from None


def _resolve(
    name: str, family: str, policy: Any, options_json: str | None
) -> tuple[str, str, dict[str, Any]]:
    """(alias, adapter, options): a model alias of --policy, its face model, or an adapter name."""
    if policy is not None and family == "nsfw" and name in policy.models:
        spec = policy.models[name]
        return name, spec.adapter, dict(spec.options)
    if (
        policy is not None
        and family == "face"
        and policy.consent.face_model.adapter == name
        and not options_json
    ):
        return name, name, dict(policy.consent.face_model.options)
    try:
        options = json.loads(options_json) if options_json else {}
    except json.JSONDecodeError as exc:
        raise fail(f"--options is not valid JSON: {exc}") from None
    if not isinstance(options, dict):
        raise fail("--options must be a JSON object")
    return name, name, options


def _family(name: str, policy: Any, forced: str | None) -> str:
    from classifiers.registry import builtin_registry

    if forced:
        return forced
    if policy is not None and name in policy.models:
        return "nsfw"
    registry = builtin_registry()
    for family in ("nsfw", "face", "voice"):
        if registry.has(family, name):
            return family
    raise fail(f"{name!r} is neither a model alias of --policy nor a registered nsfw or face adapter")


def _build(family: str, adapter: str, options: Mapping[str, Any]) -> Any:
    from classifiers.base import ModelError
    from classifiers.registry import builtin_registry

    try:
        return builtin_registry().create(family, adapter, options)
    except ModelError as exc:
        raise fail(str(exc)) from None


def _images(folder: Path) -> list[tuple[str, Any]]:
    """(path relative to `folder`, RGB working image) for every image below `folder`, decoded as
    the gateway decodes uploads (orientation, working size)."""
    from gateway.errors import GatewayError
    from gateway.media import MediaLimits, decode_image

    limits = MediaLimits()
    out = []
    for i, path in enumerate(sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)):
        try:
            out.append(
                (str(path.relative_to(folder)), decode_image(path.read_bytes(), limits, index=i).working)
            )
        except GatewayError as exc:
            typer.secho(f"skipping {path}: {exc.message}", fg=typer.colors.YELLOW, err=True)
    return out


def _emit(
    snippet: dict[str, Any], comments: list[str], report: dict[str, Any], out: Path | None, as_json: bool
) -> None:
    import yaml

    text = "".join(f"# {c}\n" for c in comments) + yaml.safe_dump(snippet, sort_keys=False)
    if out is not None:
        out.write_text(text)
    if as_json:
        typer.echo(json.dumps({**report, "snippet": snippet}, indent=2))
    else:
        typer.echo(text, nl=False)


def _roc_table(title: str, points: list[Any]) -> None:
    typer.echo(f"{title}\n  threshold     TPR     FPR", err=True)
    for p in points:
        tpr = "   -  " if p.tpr is None else f"{p.tpr:6.3f}"
        typer.echo(f"  {p.threshold:9.6f}  {tpr}  {p.fpr:6.3f}", err=True)


# ---------------------------------------------------------------- list
@models_app.command("list")
def list_models(as_json: JsonOpt = False) -> None:
    """Every registered adapter: family, name, where its weights come from, which install provides it."""
    from classifiers.registry import builtin_registry

    rows = [{"family": spec.family, "name": spec.name,
             "weights": "package" if spec.weights == "package" else "model_dir", "install": spec.extra or "default"}
            for spec in builtin_registry().adapters()]
    echo_table(rows, ["family", "name", "weights", "install"], as_json)


# ---------------------------------------------------------------- calibrate
@models_app.command("calibrate")
def calibrate(
    model: Annotated[str, typer.Option("--model", help="Adapter name, or a model alias of --policy.")],
    labels: Annotated[
        Path, typer.Option("--labels", help="A folder per label (NSFW) or per identity (face).")
    ],
    target_fpr: Annotated[
        float, typer.Option("--target-fpr", help="Target false-positive / false-match rate.")
    ] = 0.01,
    review_fpr: Annotated[
        float | None, typer.Option("--review-fpr", help="Also a review threshold at this (higher) rate.")
    ] = None,
    negatives: Annotated[
        list[str] | None,
        typer.Option("--negatives", help="Folders that are negatives (default: every other folder)."),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode", help="Face models: identity (folders per person) | detection (faces/, no_faces/)."
        ),
    ] = None,
    family: Annotated[
        str | None, typer.Option("--family", help="nsfw | face (default: from the name).")
    ] = None,
    policy: PolicyOpt = None,
    options: OptionsOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the YAML snippet here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON.")] = False,
) -> None:
    """Fit thresholds on your own labelled images and print them as a policy snippet (YAML).

    NSFW model: for each model label with a folder of that name, the lowest `deny` threshold whose
    false-positive rate on the other folders (or --negatives) is at most --target-fpr; ROC points go
    to stderr. Face model: folders per identity give a `match_threshold` at the target false-match
    rate over pairs of different people; `faces/` + `no_faces/` (--mode detection) give a detector
    score threshold."""

    if not labels.is_dir():
        raise fail(f"{labels}: not a directory")
    if not 0.0 <= target_fpr < 1.0 or (review_fpr is not None and not target_fpr <= review_fpr < 1.0):
        raise fail("--target-fpr must be in [0, 1) and --review-fpr (when given) in [target, 1)")
    pol = _policy(policy)
    fam = _family(model, pol, family)
    if fam == "voice":  # folders per speaker of audio files (issue #18)
        _alias, adapter, opts = _resolve(model, fam, None, options)
        _calibrate_voice(adapter, labels, target_fpr, opts, out, as_json)
        return
    alias, adapter, opts = _resolve(model, fam, pol, options)
    folders = {p.name: _images(p) for p in sorted(labels.iterdir()) if p.is_dir()}
    folders = {k: v for k, v in folders.items() if v}
    if len(folders) < 2:
        raise fail(f"{labels}: needs at least two sub-folders with images (found {sorted(folders)})")
    built = _build(fam, adapter, opts)
    spec: dict[str, Any] = {"adapter": adapter, **({"options": opts} if opts else {})}
    if fam == "nsfw":
        _calibrate_nsfw(built, alias, spec, folders, target_fpr, review_fpr, negatives, out, as_json)
        return
    chosen = mode or ("detection" if set(folders) == {"faces", "no_faces"} else "identity")
    if chosen == "detection":
        _calibrate_detector(built, adapter, folders, target_fpr, out, as_json)
    elif chosen == "identity":
        _calibrate_identity(built, spec, folders, target_fpr, out, as_json)
    else:
        raise fail("--mode must be identity or detection")


def _calibrate_nsfw(
    model: Any,
    alias: str,
    spec: dict[str, Any],
    folders: dict[str, list[tuple[str, Any]]],
    target: float,
    review: float | None,
    negatives: list[str] | None,
    out: Path | None,
    as_json: bool,
) -> None:
    from classifiers import evaluation as ev

    wanted = [lb for lb in model.labels if lb in folders]
    if not wanted:
        raise fail(
            f"no folder is named after a label of {alias!r}; its labels: {', '.join(model.labels)}; "
            f"folders: {', '.join(folders)}"
        )
    unknown = sorted(set(negatives or ()) - set(folders))
    if unknown:
        raise fail(f"--negatives names folders that do not exist or hold no images: {unknown}")
    scores = {name: model.classify([img for _, img in items]) for name, items in folders.items()}
    thresholds: dict[str, dict[str, float]] = {}
    comments = [f"consentgate models calibrate --model {alias}: target FPR {target}"]
    report: dict[str, Any] = {
        "model": alias,
        "adapter": spec["adapter"],
        "model_version": model.info.version,
        "target_fpr": target,
        "labels": {},
    }
    for label in wanted:
        neg_folders = [f for f in (negatives or folders) if f != label]
        pos = [s[label] for s in scores[label]]
        neg = [s[label] for f in neg_folders for s in scores[f]]
        op = ev.threshold_at_fpr(neg, pos, target)
        entry = {"deny": op.threshold}
        line = (
            f"{label}: deny {op.threshold} -> TPR {op.tpr:.3f}, FPR {op.fpr:.3f} "
            f"({op.positives} positives, {op.negatives} negatives in {', '.join(neg_folders)})"
        )
        area = ev.auc(neg, pos)
        rep: dict[str, Any] = {
            "deny": asdict(op),
            "auc": area,
            "roc": [asdict(p) for p in ev.roc_points(neg, pos)],
        }
        if review is not None:
            rop = ev.threshold_at_fpr(neg, pos, review)
            entry["review"] = min(rop.threshold, op.threshold)
            rep["review"] = asdict(rop)
            line += f"; review {entry['review']} -> TPR {rop.tpr:.3f}, FPR {rop.fpr:.3f}"
        if not op.resolvable:
            line += f" [only {op.negatives} negatives: a rate of {target} needs at least {int(1 / target)}]"
        thresholds[label] = entry
        comments.append(line)
        report["labels"][label] = rep
        _roc_table(
            f"ROC {alias}.{label} (AUC {'-' if area is None else round(area, 4)})",
            ev.roc_points(neg, pos),
        )
    comments.append("paste `models` under the policy's models and the check under uses.<use>.<stage>.nsfw")
    snippet = {"models": {alias: spec}, "nsfw": [{"model": alias, "labels": thresholds}]}
    _emit(snippet, comments, report, out, as_json)


def _faces(analyzer: Any, items: list[tuple[str, Any]]) -> tuple[list[Any], list[str]]:
    faces, skipped = [], []
    for name, img in items:
        found = [f for f in analyzer.analyze(img) if f.embedding is not None]
        if len(found) == 1:
            faces.append(found[0])
        else:
            skipped.append(f"{name} ({len(found)} faces)")
    return faces, skipped


AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a"}


def _calibrate_voice(adapter: str, labels: Path, target: float, opts: dict[str, Any], out: Path | None,
                     as_json: bool) -> None:
    """Voice models: a folder per speaker of audio files (different sentences); each file's speech
    (silence cut out, as the gateway's check does) is embedded, and `voice_match_threshold` is the
    lowest cosine whose false-match rate over pairs of different speakers is at most the target."""
    from classifiers import evaluation as ev
    from gateway.audio.intake import decode_audio
    from gateway.errors import GatewayError
    from gateway.registry.voices import speech_only

    embedder = _build("voice", adapter, opts)
    embeddings: dict[str, list[Any]] = {}
    skipped: list[str] = []
    for folder in sorted(p for p in labels.iterdir() if p.is_dir()):
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
            try:
                samples = decode_audio(path.read_bytes()).samples
            except GatewayError as exc:
                skipped.append(f"{folder.name}/{path.name} ({exc.message})")
                continue
            speech = speech_only(samples, embedder.speech(samples), embedder.sample_rate)
            if len(speech) < embedder.sample_rate:  # under a second of speech: not identifiable
                skipped.append(f"{folder.name}/{path.name} (under 1 s of speech)")
                continue
            embeddings.setdefault(folder.name, []).append(embedder.embed([speech])[0])
    if len(embeddings) < 2:
        raise fail("voice calibration needs at least two speakers with speech (a folder of audio files each)")
    genuine, impostor = ev.pair_similarities(embeddings)
    op = ev.threshold_at_fpr(impostor, genuine, target)
    fnmr = None if op.tpr is None else 1.0 - op.tpr
    comments = [
        f"consentgate models calibrate --model {adapter}: target false-match rate {target}",
        f"voice_match_threshold {op.threshold}: FMR {op.fpr:.4f} over {op.negatives} impostor pairs, "
        f"TAR {'-' if op.tpr is None else f'{op.tpr:.4f}'} over {op.positives} genuine pairs "
        f"({len(embeddings)} speakers)",
    ]
    if impostor and genuine:
        comments.append(f"impostor cosine max {max(impostor):.4f}; genuine min {min(genuine):.4f}")
    if not op.resolvable:
        comments.append(f"only {op.negatives} impostor pairs: a rate of {target} needs at least {int(1 / target)}")
    if skipped:
        comments.append(f"skipped: {', '.join(skipped)}")
    _roc_table(f"ROC {adapter} voices (AUC {ev.auc(impostor, genuine)})", ev.roc_points(impostor, genuine))
    spec: dict[str, Any] = {"adapter": adapter, **({"options": opts} if opts else {})}
    report = {"model": adapter, "model_version": embedder.info.version, "target_fmr": target, "match": asdict(op),
              "fnmr": fnmr, "genuine": sorted(genuine), "impostor": sorted(impostor), "skipped": skipped}
    _emit({"consent": {"voice_model": spec, "voice_match_threshold": op.threshold}}, comments, report, out,
          as_json)


def _calibrate_identity(
    analyzer: Any,
    spec: dict[str, Any],
    folders: dict[str, list[tuple[str, Any]]],
    target: float,
    out: Path | None,
    as_json: bool,
) -> None:
    from classifiers import evaluation as ev

    embeddings: dict[str, list[Any]] = {}
    skipped: list[str] = []
    for ident, items in folders.items():
        faces, skip = _faces(analyzer, items)
        skipped += [f"{ident}/{s}" for s in skip]
        if faces:
            embeddings[ident] = [f.embedding for f in faces]
    if len(embeddings) < 2:
        raise fail("identity calibration needs at least two identities with one face per image")
    genuine, impostor = ev.pair_similarities(embeddings)
    op = ev.threshold_at_fpr(impostor, genuine, target)
    fnmr = None if op.tpr is None else 1.0 - op.tpr
    comments = [
        f"consentgate models calibrate --model {spec['adapter']}: target false-match rate {target}",
        f"match_threshold {op.threshold}: FMR {op.fpr:.4f} over {op.negatives} impostor pairs, "
        f"FNMR {'-' if fnmr is None else f'{fnmr:.4f}'} over {op.positives} genuine pairs "
        f"({len(embeddings)} identities)",
    ]
    if impostor:
        comments.append(
            f"impostor cosine max {max(impostor):.4f}; genuine min {min(genuine):.4f}"
            if genuine
            else f"impostor cosine max {max(impostor):.4f}"
        )
    if not op.resolvable:
        comments.append(
            f"only {op.negatives} impostor pairs: a rate of {target} needs at least {int(1 / target)}"
        )
    if skipped:
        comments.append(f"skipped (not exactly one face): {', '.join(skipped)}")
        typer.secho(
            f"skipped {len(skipped)} image(s) without exactly one face", fg=typer.colors.YELLOW, err=True
        )
    _roc_table(
        f"ROC {spec['adapter']} identity (AUC {ev.auc(impostor, genuine)})", ev.roc_points(impostor, genuine)
    )
    report = {
        "model": spec["adapter"],
        "model_version": analyzer.info.version,
        "target_fmr": target,
        "match": asdict(op),
        "fnmr": fnmr,
        "genuine": sorted(genuine),
        "impostor": sorted(impostor),
        "skipped": skipped,
    }
    _emit({"consent": {"face_model": spec, "match_threshold": op.threshold}}, comments, report, out, as_json)


def _calibrate_detector(
    analyzer: Any,
    adapter: str,
    folders: dict[str, list[tuple[str, Any]]],
    target: float,
    out: Path | None,
    as_json: bool,
) -> None:
    from classifiers import evaluation as ev

    if set(folders) != {"faces", "no_faces"}:
        raise fail("detection calibration needs exactly two folders: faces/ and no_faces/")

    def best(img: Any) -> float:
        return max((f.det_score for f in analyzer.analyze(img)), default=0.0)

    pos = [best(img) for _, img in folders["faces"]]
    neg = [best(img) for _, img in folders["no_faces"]]
    op = ev.threshold_at_fpr(neg, pos, target)
    comments = [
        f"consentgate models calibrate --model {adapter} --mode detection: target FPR {target}",
        f"det_score >= {op.threshold}: TPR {op.tpr:.3f} on {op.positives} face images, FPR {op.fpr:.3f} on "
        f"{op.negatives} images without faces",
        "use it as the registry's enrolment gate (min_det_score) or convert it to the adapter's min_score",
    ]
    _roc_table(f"ROC {adapter} detection (AUC {ev.auc(neg, pos)})", ev.roc_points(neg, pos))
    report = {
        "model": adapter,
        "model_version": analyzer.info.version,
        "target_fpr": target,
        "detection": asdict(op),
        "faces": pos,
        "no_faces": neg,
    }
    _emit(
        {"face_detection": {"model": adapter, "min_det_score": op.threshold}}, comments, report, out, as_json
    )


# ---------------------------------------------------------------- compare
def _checks(
    policy: Any, alias: str, use: str | None, stage: str
) -> dict[str, tuple[float | None, float | None]]:
    """label -> (deny, review) of the first check of model `alias` (in `use`, else any use) at `stage`."""
    if policy is None:
        return {}
    uses = [use] if use else sorted(policy.uses)
    for u in uses:
        rules = getattr(policy.uses.get(u), stage, None) if u in policy.uses else None
        for check in getattr(rules, "nsfw", []) or []:
            if check.model == alias:
                return {lb: (t.deny, t.review) for lb, t in check.labels.items()}
    return {}


def _since_pairs(
    records: list[dict[str, Any]], baseline: str, candidate: str
) -> tuple[list[str], list[dict[str, float]], list[dict[str, float]]]:
    """Per media item (and video frame) of each decision: the two models' scores."""

    def pick(findings: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
        by_alias = [f for f in findings if f.get("model") == name]
        return by_alias or [f for f in findings if f.get("adapter") == name]

    items, base, cand = [], [], []
    for record in records:
        findings = record.get("findings", {}).get("nsfw", [])
        sides: dict[tuple[Any, ...], dict[str, dict[str, float]]] = defaultdict(dict)
        for side, name in (("b", baseline), ("c", candidate)):
            for f in pick(findings, name):
                sides[(f.get("media_index"), f.get("t"), f.get("frame"))][side] = f.get("scores", {})
        for (media, t, _frame), got in sorted(sides.items(), key=lambda kv: str(kv[0])):
            if "b" in got and "c" in got:
                items.append(f"{record.get('decision_id')}:{media}" + (f"@{t}" if t is not None else ""))
                base.append(got["b"])
                cand.append(got["c"])
    return items, base, cand


@models_app.command("compare")
def compare(
    baseline: Annotated[str, typer.Option("--baseline", help="Adapter name or a model alias of --policy.")],
    candidate: Annotated[str, typer.Option("--candidate", help="Adapter name or a model alias of --policy.")],
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Run both models on the images below DIR.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Read both models' findings from the audit log (RFC 3339 or 24h/7d)."),
    ] = None,
    policy: PolicyOpt = None,
    use: Annotated[
        str | None, typer.Option("--use", help="Use whose checks give the thresholds (default: first).")
    ] = None,
    stage: Annotated[str, typer.Option("--stage", help="input | output")] = "output",
    pair: Annotated[
        list[str] | None,
        typer.Option("--pair", help="BASELINE_LABEL=CANDIDATE_LABEL (default: common labels)."),
    ] = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="deny threshold where the policy has none.")
    ] = 0.5,
    top: Annotated[int, typer.Option("--top", help="Disagreements to list per label.")] = 5,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Compare a candidate NSFW model with the baseline on the same images: per label the agreement
    and confusion of their verdicts at the policy thresholds (baseline thresholds from the baseline's
    check; the candidate's from its own check if the policy has one — e.g. its shadow check — else
    the baseline's), Pearson/Spearman score correlation, latency per image, and the images where
    they disagree most."""
    from classifiers import evaluation as ev

    if (directory is None) == (since is None):
        raise fail("give exactly one of --dir or --since")
    pol = _policy(policy)
    latency: dict[str, list[float]] = {baseline: [], candidate: []}
    if directory is not None:
        if not directory.is_dir():
            raise fail(f"{directory}: not a directory")
        models = {}
        for name in (baseline, candidate):
            alias, adapter, opts = _resolve(name, "nsfw", pol, None)
            models[name] = _build("nsfw", adapter, opts)
        images = _images(directory)
        if not images:
            raise fail(f"{directory}: no images")
        items = [name for name, _ in images]
        scores: dict[str, list[dict[str, float]]] = {baseline: [], candidate: []}
        for _, img in images:
            for name, model in models.items():
                start = time.perf_counter()
                scores[name] += model.classify([img])
                latency[name].append(time.perf_counter() - start)
        base_scores, cand_scores = scores[baseline], scores[candidate]
        base_labels, cand_labels = set(models[baseline].labels), set(models[candidate].labels)
    else:
        from gateway.cli.audit import open_local_log
        from gateway.cli.policy import parse_since

        start_at = parse_since(since or "")
        log = open_local_log(load_settings(data_dir))
        records: list[dict[str, Any]] = []
        cursor = None
        try:
            while True:
                page, cursor = log.query(since=start_at, kind="decision", cursor=cursor, limit=1000)
                records += [e.record for e in page]
                if not cursor:
                    break
        finally:
            log.close()
        items, base_scores, cand_scores = _since_pairs(records, baseline, candidate)
        if not items:
            raise fail(
                f"no decision since {start_at.isoformat()} has findings of both "
                f"{baseline!r} and {candidate!r}"
            )
        base_labels = {lb for s in base_scores for lb in s}
        cand_labels = {lb for s in cand_scores for lb in s}
    base_thr = _checks(pol, baseline, use, stage)
    cand_thr = _checks(pol, candidate, use, stage)
    if pair:
        pairs = []
        for p in pair:
            b, sep, c = p.partition("=")
            if not sep or b not in base_labels or c not in cand_labels:
                raise fail(
                    f"--pair {p!r}: expected BASELINE_LABEL=CANDIDATE_LABEL with labels the models produce"
                )
            pairs.append((b, c))
    else:
        common = sorted(base_labels & cand_labels)
        pairs = [(lb, lb) for lb in common if not base_thr or lb in base_thr]
    if not pairs:
        raise fail(
            f"no common labels ({', '.join(sorted(base_labels))} vs {', '.join(sorted(cand_labels))}); "
            "pass --pair BASELINE_LABEL=CANDIDATE_LABEL"
        )
    results = []
    verdicts_b: list[list[str]] = [[] for _ in items]
    verdicts_c: list[list[str]] = [[] for _ in items]
    for b, c in pairs:
        tb = base_thr.get(b, (threshold, None))
        tc = cand_thr.get(c, tb)
        sb = [s.get(b, 0.0) for s in base_scores]
        sc = [s.get(c, 0.0) for s in cand_scores]
        results.append(ev.compare_label(items, sb, sc, tb, tc, (b, c), top))
        for i, (x, y) in enumerate(zip(sb, sc, strict=True)):
            verdicts_b[i].append(ev.outcome(x, *tb))
            verdicts_c[i].append(ev.outcome(y, *tc))
    overall = ev.compare_label(
        items,
        [float(ev.OUTCOMES.index(ev.worst(v))) for v in verdicts_b],
        [float(ev.OUTCOMES.index(ev.worst(v))) for v in verdicts_c],
        (2.0, 1.0),
        (2.0, 1.0),
        ("(image verdict)", "(image verdict)"),
        top,
    )
    lat = {
        name: {"median_ms": ev.percentile_ms(v, 50), "p95_ms": ev.percentile_ms(v, 95)}
        for name, v in latency.items()
    }
    report = {
        "baseline": baseline,
        "candidate": candidate,
        "source": str(directory) if directory else f"audit since {since}",
        "items": len(items),
        "labels": [asdict(r) for r in results],
        "image_verdict": asdict(overall),
        "latency": lat,
    }
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(
        f"{baseline} (baseline) vs {candidate} (candidate) on {len(items)} items from {report['source']}"
    )
    for r in [*results, overall]:
        name = (
            r.baseline_label
            if r.baseline_label == r.candidate_label
            else f"{r.baseline_label} ~ {r.candidate_label}"
        )
        corr = "" if r.pearson is None else f", Pearson {r.pearson:.3f}, Spearman {r.spearman:.3f}"
        typer.echo(f"\n{name}: agreement {r.agreement:.1%} ({r.n} items){corr}")
        typer.echo("  baseline \\ candidate   allow  review    deny")
        for ob in ev.OUTCOMES:
            row = r.confusion[ob]
            typer.echo(f"  {ob:21} {row['allow']:6d}  {row['review']:6d}  {row['deny']:6d}")
        for d in r.disagreements:
            typer.echo(
                f"  {d['item']}: {d['baseline']} ({d['baseline_outcome']}) vs "
                f"{d['candidate']} ({d['candidate_outcome']})"
            )
    for name, v in lat.items():
        if v["median_ms"] is not None:
            typer.echo(f"latency {name}: median {v['median_ms']:.1f} ms, p95 {v['p95_ms']:.1f} ms per image")
    if directory is None:
        typer.echo("latency: not recorded in the audit log (use --dir to time both models)")


# ---------------------------------------------------------------- face-ready
@models_app.command("face-ready")
def face_ready(
    model: Annotated[str, typer.Option("--model", help="Face adapter name (or the face model of --policy).")],
    reembed: Annotated[
        bool, typer.Option("--reembed", help="Re-embed every subject first (switch_face_model).")
    ] = False,
    policy: PolicyOpt = None,
    options: OptionsOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Exit 0 when every enrolled subject has templates for MODEL (at its current weights); with
    --reembed, compute them from the kept enrolment images first. Exit 1 naming how many are missing."""
    from gateway.bootstrap import open_audit_log, open_registry
    from gateway.db import make_engine
    from gateway.policy.runtime import ModelPool
    from gateway.registry.switch import FaceModelNotReady, face_model_ready, switch_face_model

    settings = require_data_dir(load_settings(data_dir))
    pol = _policy(policy)
    _, adapter, opts = _resolve(model, "face", pol, options)
    analyzer = _build("face", adapter, opts)
    from classifiers.registry import builtin_registry

    engine = make_engine(settings.resolved_database_url)
    log = open_audit_log(settings, engine)  # re-embedding is a registry mutation: a ledger entry each
    registry = open_registry(settings, engine, ModelPool(builtin_registry()), ledger=log)
    try:
        if reembed:
            try:
                report = switch_face_model(registry, adapter, analyzer)
            except FaceModelNotReady as exc:
                typer.echo(json.dumps(exc.report))
                raise fail(str(exc)) from None
            typer.echo(json.dumps(report))
            return
        ok, missing = face_model_ready(registry, adapter, analyzer.info.version)
    finally:
        registry.close()
        log.close()
        engine.dispose()
    typer.echo(
        json.dumps(
            {"model": adapter, "model_version": analyzer.info.version, "ready": ok, "missing": missing}
        )
    )
    if not ok:
        raise fail(f"{missing} enrolled subject(s) have no {adapter!r} template; run with --reembed")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(models_app())
