"""Why: everything a running gateway holds (database, keys, models, policies, registry, audit log,
provenance, the pipeline, proxy resources, jobs) is built here from `Settings` — the one
composition root — and hung on the app as a `Gateway` with typed fields only. No module-level
singletons, so two apps in one process (tests, two replicas) never share state by accident, and
nothing below this module reaches back up for "the gateway": each part gets the narrow ports it
needs (`gateway.pipeline.ports.PipelinePorts` for the pipeline)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from classifiers.rayserve import ServeClient, remote_registry
from classifiers.registry import ModelRegistry, builtin_registry
from gateway.apikeys import ApiKeyStore
from gateway.audit import AuditLog
from gateway.bootstrap import (
    AuditDecisions,
    PseudonymisingSink,
    bundle_uses,
    ensure_initialised,
    grant_guard,
    open_audit_log,
    open_provenance,
    open_registry,
    start_retention,
)
from gateway.db import make_engine
from gateway.jobs import JobService, open_jobs
from gateway.media import MediaLimits
from gateway.metrics import Metrics
from gateway.pipeline import EmptyConsent, Pipeline, PipelineConfig, PipelinePorts
from gateway.pipeline.ports import ConsentLookup
from gateway.policy.errors import PolicyError
from gateway.policy.manager import ActivePolicy, PolicyManager
from gateway.policy.runtime import ModelPool
from gateway.provenance.service import ProvenanceService
from gateway.registry.service import Registry
from gateway.registry.switch import face_model_ready, voice_model_ready
from gateway.settings import Settings
from gateway.upstream.manager import RouteManager
from gateway.upstream.routes import RouteTable, load_routes
from gateway.upstream.state import ProxyState, open_proxy_state
from gateway.video.sampling import phase_from_seed

__all__ = ["Gateway", "build_gateway", "bundle_uses", "grant_guard", "policy_manager", "utc_now"]

log = logging.getLogger("consentgate")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Gateway:
    settings: Settings
    engine: Engine
    apikeys: ApiKeyStore
    metrics: Metrics
    models: ModelRegistry
    pool: ModelPool
    policies: PolicyManager
    audit: AuditLog
    registry: Registry | None
    consent: ConsentLookup
    provenance: ProvenanceService
    limits: MediaLimits
    pipeline: Pipeline
    proxy: ProxyState
    jobs: JobService
    # The ray model backend's client (None in-process): /readyz asks it whether the workers answer.
    serve_client: ServeClient | None = None
    started: bool = False

    def close(self) -> None:
        closers: list[tuple[str, Callable[[], None]]] = [
            ("policies", self.policies.stop), ("jobs", self.jobs.stop), ("proxy", self.proxy.close),
            ("audit", self.audit.close),
        ]
        if self.registry is not None:
            closers.append(("registry", self.registry.close))
        closers.append(("provenance", self.provenance.close))
        if self.serve_client is not None:
            closers.append(("model workers client", self.serve_client.close))
        for name, closer in closers:
            try:
                closer()
            except Exception:  # noqa: BLE001
                log.exception("error while closing %s", name)
        self.engine.dispose()


def _watch_face_models(policies: PolicyManager, registry: Registry) -> None:
    """Attach each active policy's face (and voice) models to the registry, and refuse a bundle whose
    face or voice model lacks templates for enrolled subjects: they would match nobody (fail open).
    Re-embed first: `consentgate registry reembed [--kind voice] --model NAME`."""

    def attach_face_models(active: ActivePolicy) -> None:
        faces = {active.runtime.face.info.name: active.runtime.face}
        faces.update({rt.face.info.name: rt.face for rt in active.overlay_runtimes.values()})
        registry.face_analyzers.update(faces)
        voices = {rt.voice.info.name: rt.voice for rt in [active.runtime, *active.overlay_runtimes.values()]
                  if rt.voice is not None}
        registry.voice_embedders.update(voices)  # voices are likenesses too (issue #18)

    def face_models_ready(active: ActivePolicy) -> None:
        errors: list[str] = []
        runtimes = [(None, active.runtime), *active.overlay_runtimes.items()]
        for tenant, rt in runtimes:
            ok, missing = face_model_ready(registry, rt.face.info.name, rt.face.info.version)
            where = active.bundle.locator(tenant)(("consent", "face_model"))
            message = (f"{where}: consent.face_model: {missing} enrolled subject(s) have no {rt.face.info.name!r} "
                       f"template at version {rt.face.info.version}; run `consentgate registry reembed --model "
                       f"{rt.face.info.name}` before switching")
            if not ok and message not in errors:
                errors.append(message)
            if rt.voice is None:
                continue
            ok, missing = voice_model_ready(registry, rt.voice.info.name, rt.voice.info.version)
            where = active.bundle.locator(tenant)(("consent", "voice_model"))
            message = (f"{where}: consent.voice_model: {missing} voice-enrolled subject(s) have no "
                       f"{rt.voice.info.name!r} template at version {rt.voice.info.version}; run `consentgate "
                       f"registry reembed --kind voice --model {rt.voice.info.name}` before switching")
            if not ok and message not in errors:
                errors.append(message)
        if errors:
            raise PolicyError(errors)

    policies.on_activate = attach_face_models
    policies.validators.append(face_models_ready)


def policy_manager(
    settings: Settings, pool: ModelPool, *, registry: Registry | None = None, policy_name: str | None = None,
    on_result: Callable[[str], None] | None = None,
) -> PolicyManager:
    """The one place that says what activating a bundle checks: load + schema + registered adapters
    (every overlay too), the signature when a trust key is set, loading every model and the labels
    it produces, and — given the registry — face-model readiness. The gateway activates with it;
    `consentgate policy validate` and `policy explain` build theirs here too, so a bundle that
    validates is a bundle the gateway loads (OPA's one compiler for `opa check` and the server)."""
    signature_check = None
    if settings.policy_trust_key is not None:
        from gateway.policy.signing import verifier

        signature_check = verifier(settings.policy_trust_key)
    policies = PolicyManager(
        settings.policies_dir,
        pool,
        policy_name=policy_name or settings.extra.get("policy_name", "default"),
        signature_check=signature_check,
        on_result=on_result,
    )
    if registry is not None:
        _watch_face_models(policies, registry)
    return policies


def model_backend(settings: Settings, metrics: Metrics,
                  models: ModelRegistry | None = None) -> tuple[ModelRegistry, ServeClient | None]:
    """The registry the model pool builds adapters from: in-process (`models`, or every built-in
    adapter), or with `model_backend=ray` the same names whose families in `ray_families` send
    their work to the Ray Serve deployments at `ray_address` (docs/deploy.md)."""
    base = models or builtin_registry()
    if settings.model_backend != "ray" or settings.ray_address is None:
        return base, None
    client = ServeClient(settings.ray_address, timeout_s=settings.model_timeout_s,
                         observer=metrics.observe_ray_call)
    return remote_registry(base, client, settings.ray_families), client


def _sampling_seed(settings: Settings) -> str | None:
    """`extra["video_sampling_seed"]`: a fixed video sampling seed (replays, tests); checked here
    so a bad one stops startup instead of failing every video."""
    seed = settings.extra.get("video_sampling_seed") or None
    if seed is not None:
        phase_from_seed(seed, 1.0)
    return seed


def bundle_routes(settings: Settings, policies: PolicyManager, routes: RouteManager) -> None:
    """Make the routes file part of the policy bundle (issue #15.4): parsed from the bytes of the
    bundle being activated (so the digest and the signature cover it), refusing the whole bundle
    when it is invalid, and live in the same swap as the policies. A routes file outside the policy
    directory has no signature over it: under a trust key it is refused."""
    try:
        rel = routes.path.resolve().relative_to(settings.policies_dir.resolve()).as_posix()
    except ValueError:
        if settings.policy_trust_key is not None:
            routes.refuse(f"{routes.path}: the routes file is outside the policy directory, so the bundle "
                          f"signature does not cover it; with a trust key it is refused (move it into "
                          f"{settings.policies_dir})")
        return
    path = routes.path
    policies.attachers["routes"] = lambda active: load_routes(path, active.bundle.sources.get(rel), from_bundle=True)

    def table() -> RouteTable | None:
        active = policies.active
        found = active.attachments.get("routes") if active is not None else None
        return found if isinstance(found, RouteTable) else None

    routes.bind(table, lambda: policies.last_error, policies.reload)


def build_gateway(settings: Settings, *, models: ModelRegistry | None = None) -> Gateway:
    ensure_initialised(settings)
    engine = make_engine(settings.resolved_database_url)
    metrics = Metrics()
    registry_models, serve_client = model_backend(settings, metrics, models)
    pool = ModelPool(registry_models, threads=settings.model_threads)
    audit = open_audit_log(settings, engine)
    registry = open_registry(settings, engine, pool, ledger=audit)
    policies = policy_manager(settings, pool, registry=registry,
                              on_result=lambda result: metrics.policy_reloads.labels(result).inc())
    registry.grant_guard = grant_guard(settings, engine, lambda: bundle_uses(policies.active))
    start_retention(registry, audit, policies)  # BIPA/GDPR retention, on a timer, one replica at a time
    consent: ConsentLookup = registry if registry is not None else EmptyConsent()
    provenance = open_provenance(settings, engine, pool)
    limits = MediaLimits(settings.max_upload_bytes, settings.max_pixels, settings.working_max_side)
    pipeline = Pipeline(
        PipelinePorts(policies=policies, consent=consent, audit=PseudonymisingSink(audit, registry.pseudonyms),
                      releaser=provenance, clock=utc_now,
                      metrics=metrics, decisions=AuditDecisions(audit)),
        PipelineConfig(limits=limits, max_media_parts=settings.max_media_parts,
                       working_max_side=settings.working_max_side, model_timeout_s=settings.model_timeout_s,
                       check_deadline_s=settings.check_deadline_s, scratch_dir=settings.data_dir / "tmp",
                       video_sampling_seed=_sampling_seed(settings),
                       input_decision_max_age_s=settings.input_decision_max_age_s,
                       split_below=settings.split_below),
    )
    proxy = open_proxy_state(settings, engine, metrics.registry)
    bundle_routes(settings, policies, proxy.routes)
    return Gateway(
        settings=settings, engine=engine, apikeys=ApiKeyStore(engine, settings.operator_tenant), metrics=metrics,
        models=registry_models, pool=pool, policies=policies, audit=audit, registry=registry, consent=consent,
        provenance=provenance, limits=limits, pipeline=pipeline,
        proxy=proxy,
        jobs=open_jobs(settings, engine, pipeline.video, audit, audio=pipeline.audio),
        serve_client=serve_client,
    )
