"""Why: admins validate, test, explain, sign and review policies from the shell before a change
goes live — `consentgate policy validate|test|explain|sign|keygen|shadow-report|schema`."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from gateway.cli.common import DataDir, fail, load_settings, require_data_dir

if TYPE_CHECKING:  # the models and the registry load inside the commands that need them
    from classifiers.registry import ModelRegistry
    from gateway.policy.runtime import ModelPool
    from gateway.registry.service import Registry
    from gateway.settings import Settings

policy_app = typer.Typer(help="Validate, test, explain and sign policy bundles.", no_args_is_help=True)
DirArg = Annotated[Path | None, typer.Argument(help="Policy directory (default: CONSENTGATE_POLICIES or ./policies)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object (for scripts).")]


def _registry() -> ModelRegistry:
    from classifiers.registry import builtin_registry

    return builtin_registry()


@policy_app.command("validate")
def validate(
    directory: DirArg = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Validate only this policy file (default: every policy file of DIR).")] = None,
    trust_key: Annotated[Path | None, typer.Option(
        "--trust-key", help="Require a valid bundle.sig (env CONSENTGATE_POLICY_TRUST_KEY).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="Also check face-model readiness against this data dir's registry (read-only).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run exactly the checks the gateway runs before a bundle goes live (schema, adapters and their
    options, the labels each model produces, every policy file and tenant overlay, routes.yaml, the
    signature when a trust key is given, and with --data-dir face-model readiness). Exit 0 when the
    gateway would load it; else print each error (FILE:LINE: field.path: message) and exit 1."""
    from gateway.context import policy_manager
    from gateway.policy.errors import PolicyError
    from gateway.upstream.routes import load_routes

    settings = load_settings(None, directory)
    if trust_key is not None:
        settings = settings.with_overrides(policy_trust_key=trust_key)
    d = settings.policies_dir
    names = [name] if name else policy_names(d)
    errors: list[str] = []
    checked: list[dict[str, Any]] = []
    with _runtime_parts(settings, data_dir) as (pool, registry):
        if not names:
            errors.append(f"{d}: no policy file (*.yaml other than routes.yaml)")
        for policy_name in names:
            manager = policy_manager(settings, pool, registry=registry, policy_name=policy_name)
            try:
                active = manager.build()
            except PolicyError as exc:
                errors.extend(e for e in exc.errors if e not in errors)
                continue
            checked.append({"file": f"{policy_name}.yaml", "policy": active.bundle.policy.name,
                            "digest": active.bundle.digest, "tenant_overlays": sorted(active.bundle.overlays)})
    routes = 0
    try:
        routes = len(load_routes(d / "routes.yaml").routes)  # what the gateway's RouteManager loads
    except PolicyError as exc:
        errors.extend(exc.errors)
    checks = {"signature": settings.policy_trust_key is not None, "face_model_readiness": data_dir is not None}
    if as_json:
        typer.echo(json.dumps({"ok": not errors, "policies": checked, "routes": routes, "checked": checks,
                               "errors": errors}, indent=2))
    else:
        for err in errors:
            typer.secho(err, fg=typer.colors.RED, err=True)
        for item in checked:
            overlays = ", ".join(item["tenant_overlays"])
            typer.echo(f"ok: policy {item['policy']!r} ({item['file']}), digest {item['digest']}"
                       + (f", tenant overlays: {overlays}" if overlays else ""))
        if not errors:
            skipped = [what for what, done in (("signature (no trust key)", checks["signature"]),
                                               ("face-model readiness (no --data-dir)",
                                                checks["face_model_readiness"])) if not done]
            typer.echo(f"ok: {len(checked)} policy file(s), {routes} route(s)"
                       + (f"; not checked: {', '.join(skipped)}" if skipped else ""))
    if errors:
        raise typer.Exit(1)


def policy_names(directory: Path) -> list[str]:
    """The policy files of a bundle directory: its top-level YAML files but routes.yaml."""
    return sorted(p.stem for p in directory.glob("*.yaml") if p.name != "routes.yaml") if directory.is_dir() else []


@contextmanager
def _runtime_parts(settings: Settings, data_dir: Path | None) -> Iterator[tuple[ModelPool, Registry | None]]:
    """The model pool the gateway builds, and with DATA_DIR its consent registry (read-only use)."""
    from classifiers.registry import builtin_registry
    from gateway.policy.runtime import ModelPool

    pool = ModelPool(builtin_registry(), threads=settings.model_threads)
    if data_dir is None:
        yield pool, None
        return
    from gateway.bootstrap import open_registry
    from gateway.db import make_engine

    local = require_data_dir(settings.with_overrides(data_dir=data_dir))
    engine = make_engine(local.resolved_database_url)
    registry = open_registry(local, engine, pool)
    try:
        yield pool, registry
    finally:
        registry.close()
        engine.dispose()


@policy_app.command("test")
def test(
    path: Annotated[Path | None, typer.Argument(
        help="A policy directory (runs DIR/tests/*.yaml), or one case file (runs just that file).")] = None,
    directory: Annotated[Path | None, typer.Option(
        "--policies", help="The policy directory a case FILE tests (default: the FILE's ../, "
                           "else CONSENTGATE_POLICIES or ./policies).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run YAML policy test cases against every policy file of the bundle (no model is loaded: decide()
    is pure). A failed case prints what decide() did: every rule that fired, with its detail, and the
    scores it saw. Warns (without failing) about tenant overlays that no case tests. Exit 1 on any
    failure or a bundle that does not load."""
    from gateway.policy.cases import case_files, run_cases, tested_tenants
    from gateway.policy.loader import PolicyError, load_bundle

    settings = load_settings()
    if path is not None and path.is_file():
        files = [path]
        d = directory or (path.parent.parent if path.parent.name == "tests" else settings.policies_dir)
        tests_dir = path.parent
    else:
        d = directory or path or settings.policies_dir
        tests_dir = d / "tests"
        if not tests_dir.is_dir():
            raise fail(f"{tests_dir}: no test cases found")
        files = case_files(tests_dir)
    if path is not None and not path.exists():
        raise fail(f"{path}: no such file or directory")
    failed = total = 0
    overlays: set[str] = set()
    report: list[dict[str, Any]] = []
    for policy_name in policy_names(d):
        try:
            bundle = load_bundle(d, policy_name=policy_name, is_registered=_registry())
        except PolicyError as exc:
            for err in exc.errors:
                typer.secho(err, fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        overlays |= set(bundle.overlays)
        for result in run_cases(bundle, tests_dir, files):
            total += 1
            where = f"{policy_name}{'+' + result.tenant if result.tenant else ''}: {result.file}: {result.name}"
            report.append({"policy": policy_name, "tenant": result.tenant, "file": result.file, "case": result.name,
                           "ok": result.ok, "message": result.message, "fired": result.fired,
                           "scores": result.scores})
            if as_json:
                failed += not result.ok
                continue
            if result.ok:
                typer.secho(f"PASS {where}", fg=typer.colors.GREEN)
                continue
            failed += 1
            typer.secho(f"FAIL {where} — {result.message}", fg=typer.colors.RED)
            for line in result.fired or ["(no rule fired)"]:
                typer.echo(f"    fired {line}")
            for line in result.scores:
                typer.echo(f"    scores {line}")
    if path is None or not path.is_file():
        for tenant in sorted(overlays - tested_tenants(files)):
            typer.secho(f"warning: tenant overlay tenants/{tenant}.yaml has no test cases "
                        f"(add a case file with `tenant: {tenant}` under {tests_dir})",
                        fg=typer.colors.YELLOW, err=True)
    if total == 0:
        raise fail("no policy test cases ran")
    if as_json:
        typer.echo(json.dumps({"passed": total - failed, "failed": failed, "cases": report}, indent=2))
    else:
        typer.echo(f"{total - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


@policy_app.command("explain")
def explain(
    request: Annotated[Path, typer.Option("--request", help="REQUEST.json: {stage, use, prompt?, end_user?}")],
    media: Annotated[list[Path] | None, typer.Option("--media", help="Image files (repeatable).")] = None,
    directory: Annotated[Path | None, typer.Option("--policies")] = None,
    tenant: Annotated[str, typer.Option(help="The calling tenant: its overlay and its grants apply.")] = "explain",
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="Match faces, names and hashes against this data dir's registry (read-only).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Decide locally exactly as the gateway's /v1/check does — the same policy activation, models,
    consent registry (with --data-dir, read-only) and decision — and print every rule that fired
    with the facts and scores behind it. Nothing is recorded. Exit 0 allow, 1 deny or review,
    2 bad input or a bundle the gateway would refuse."""
    from gateway.api.forms import parse_request_part
    from gateway.errors import GatewayError

    settings = load_settings(None, directory)
    try:
        body = parse_request_part(request.read_bytes())
        parts = [p.read_bytes() for p in media or []]
    except OSError as exc:
        raise fail(f"cannot read {exc.filename}: {exc.strerror}", code=2) from None
    except GatewayError as exc:
        raise fail(f"{request}: {exc.message}", code=2) from None
    from gateway.pipeline.video import is_video

    if any(is_video(part) for part in parts):
        raise fail("explain takes images; check videos with `consentgate check FILE` against a gateway", code=2)
    import asyncio

    with _runtime_parts(settings, data_dir) as (pool, registry):
        try:
            record = asyncio.run(_decide(settings, pool, registry, tenant, body, parts))
        except GatewayError as exc:
            raise fail(exc.message, code=2) from None
    if as_json:
        typer.echo(json.dumps(record, indent=2))
    else:
        _print_explanation(record, registry is not None)
    if record["decision"] != "allow":
        raise typer.Exit(1)


class _NeverRecords:
    """Explain's audit sink and releaser: it decides, it never appends or releases."""

    def _refuse(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise RuntimeError("policy explain never appends to the audit log or releases media")

    append = release_image = reserve_watermark_id = finish_video = discard_watermarks = _refuse


async def _decide(settings: Settings, pool: ModelPool, registry: Registry | None, tenant: str,
                  body: Any, parts: list[bytes]) -> dict[str, Any]:
    """The gateway's own decision path (`Pipeline.decode` + `Pipeline.decide`, which /v1/check runs
    before it appends), on a bundle activated by the gateway's own `policy_manager`."""
    from gateway.apikeys import Principal
    from gateway.context import policy_manager, utc_now
    from gateway.media import MediaLimits
    from gateway.metrics import Metrics
    from gateway.pipeline import EmptyConsent, Pipeline, PipelineConfig, PipelinePorts
    from gateway.policy.errors import PolicyError

    manager = policy_manager(settings, pool, registry=registry)
    if not manager.reload():  # validate, then activate: attaches the face models to the registry
        raise fail("the gateway would refuse this bundle:\n" + (manager.last_error or ""), code=2)
    never = _NeverRecords()
    pipeline = Pipeline(
        PipelinePorts(policies=manager, consent=registry if registry is not None else EmptyConsent(),
                      audit=never, releaser=never, clock=utc_now, metrics=Metrics()),
        PipelineConfig(limits=MediaLimits(settings.max_upload_bytes, settings.max_pixels, settings.working_max_side),
                       max_media_parts=settings.max_media_parts, working_max_side=settings.working_max_side,
                       model_timeout_s=settings.model_timeout_s, scratch_dir=settings.data_dir / "tmp"),
    )
    try:
        decision = await pipeline.decide(Principal("explain", tenant, "generator"), body, await pipeline.decode(parts))
    except PolicyError as exc:
        raise fail("\n".join(exc.errors), code=2) from None
    record: dict[str, Any] = decision.record.to_dict(with_audit=False)
    return record


def _print_explanation(record: dict[str, Any], with_registry: bool) -> None:
    policy = record.get("policy", {})
    typer.echo(f"policy {policy.get('name')} ({str(policy.get('digest', ''))[:16]}…), tenant {record.get('tenant')}, "
               f"use {record.get('use')}, stage {record.get('stage')}")
    if not with_registry:
        typer.echo("registry: none (no --data-dir): faces, names and hashes match nobody")
    typer.echo(f"decision: {record['decision']}")
    typer.echo("rules that fired:" if record.get("reasons") else "rules that fired: none")
    for reason in record.get("reasons", []):
        typer.echo(f"  [{reason.get('outcome')}] {reason.get('rule')}: {reason.get('detail')}")
    findings = record.get("findings", {})
    for fact in findings.get("nsfw", []):
        top = sorted(fact.get("scores", {}).items(), key=lambda kv: -kv[1])[:5]
        typer.echo(f"  scores media {fact.get('media_index')} {fact.get('model')} ({fact.get('model_version')}): "
                   + ", ".join(f"{k}={v:.3f}" for k, v in top))
    for i, face in enumerate(findings.get("faces", [])):
        matches = ", ".join(f"{m.get('subject_id')} similarity {m.get('similarity', 0):.3f}"
                            for m in face.get("matches", [])) or "nobody"
        consent = face.get("consent", {})
        typer.echo(f"  face {i}: media {face.get('media_index')} bbox {face.get('bbox')} "
                   f"det {face.get('det_score', 0):.2f}; matches {matches}; consent {consent.get('state')}"
                   + (f" (grant {consent['grant_id']})" if consent.get("grant_id") else ""))
    for key in ("prompt", "hashes", "voices", "failures"):
        for item in findings.get(key, []):
            typer.echo(f"  {key}: {json.dumps(item, sort_keys=True)}")
    for item in findings.get("shadow", []):
        typer.echo(f"  shadow: {json.dumps(item, sort_keys=True)}")


@policy_app.command("keygen")
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Private key path; the public key goes to OUT.pub")],
) -> None:
    """Create an Ed25519 key pair for signing policy bundles (private key 0600)."""
    from gateway.policy.signing import generate_keypair

    pub = out.with_suffix(out.suffix + ".pub")
    try:
        generate_keypair(out, pub)
    except FileExistsError:
        raise fail(f"{out} exists; refusing to overwrite a key") from None
    typer.echo(f"private key {out} (keep it off the gateway), public key {pub} (CONSENTGATE_POLICY_TRUST_KEY)")


@policy_app.command("sign")
def sign(
    key: Annotated[Path, typer.Option("--key", help="Ed25519 private key (PEM).")],
    directory: DirArg = None,
) -> None:
    """Write DIR/bundle.sig: a detached signature over the bundle digest."""
    from gateway.policy.errors import PolicyError  # not the loader: signing needs no schema (#22.6)
    from gateway.policy.signing import sign_bundle

    d = directory or load_settings().policies_dir
    try:
        out = sign_bundle(d, key)
    except PolicyError as exc:
        raise fail("\n".join(exc.errors)) from None
    typer.echo(f"signed: {out}")


@policy_app.command("schema")
def schema(out: Annotated[Path | None, typer.Option("--out")] = None) -> None:
    """Print (or write) the policy JSON Schema for editors."""
    from gateway.policy.schema import export_json_schema

    text = json.dumps(export_json_schema(), indent=2, sort_keys=True) + "\n"
    if out:
        out.write_text(text)
    else:
        typer.echo(text)


def parse_since(value: str) -> datetime:
    value = value.strip()
    if value and value[-1] in "smhd" and value[:-1].replace(".", "").isdigit():
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[value[-1]]
        return datetime.now(UTC) - timedelta(**{unit: float(value[:-1])})
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def shadow_summary(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per shadow rule/label: how often it was evaluated and disagreed with the live verdict."""
    stats: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records:
        live = record.get("decision")
        for item in record.get("findings", {}).get("shadow", []):
            key = f"{item.get('rule')}"
            shadow_verdict = "allow" if item.get("outcome") in ("allow", "redact") else item.get("outcome")
            stats[key]["evaluated"] += 1
            stats[key][f"shadow_{shadow_verdict}"] += 1
            if shadow_verdict != live:
                stats[key]["disagree"] += 1
                stats[key][f"live_{live}_shadow_{shadow_verdict}"] += 1
    return {k: {**v, "disagreement_rate": round(v["disagree"] / v["evaluated"], 4)} for k, v in sorted(stats.items())}


@policy_app.command("shadow-report")
def shadow_report(
    since: Annotated[str, typer.Option("--since", help="RFC 3339 time or a duration like 24h, 7d.")] = "7d",
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Summarise, from the audit log, how often shadow rules and models disagreed with the live verdict."""
    from gateway.cli.audit import open_local_log

    start = parse_since(since)
    log = open_local_log(load_settings(data_dir))
    records = []
    cursor = None
    while True:
        page, cursor = log.query(since=start, kind="decision", cursor=cursor, limit=1000)
        records += [e.record for e in page]
        if not cursor:
            break
    summary = shadow_summary(records)
    if as_json:
        typer.echo(json.dumps({"since": start.isoformat(), "decisions": len(records), "shadow": summary}, indent=2))
        return
    typer.echo(f"{len(records)} decisions since {start.isoformat()}")
    if not summary:
        typer.echo("no shadow findings")
    for rule, s in summary.items():
        typer.echo(f"{rule}: evaluated {s['evaluated']}, disagreed {s['disagree']} ({s['disagreement_rate']:.1%})"
                   + "".join(f", {k}={v}" for k, v in s.items() if k.startswith("live_")))
