"""Why: everything a running gateway holds (database, keys, models, policies, registry, audit
log, provenance) is built here from `Settings` and hung on the app — no module-level singletons,
so two apps in one process (tests, two replicas) never share state by accident."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from classifiers.registry import ModelRegistry, builtin_registry
from gateway.apikeys import ApiKeyStore
from gateway.db import make_engine
from gateway.media import MediaLimits
from gateway.metrics import Metrics
from gateway.pipeline.check import CheckPipeline
from gateway.pipeline.ports import ConsentLookup, EmptyConsent
from gateway.policy.manager import ActivePolicy, PolicyManager
from gateway.policy.runtime import ModelPool
from gateway.settings import Settings

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
    pipeline: CheckPipeline
    audit: Any
    consent: ConsentLookup
    limits: MediaLimits
    registry: Any = None
    provenance: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
    started: bool = False

    def close(self) -> None:
        self.policies.stop()
        for closer in self.extras.get("closers", []):
            try:
                closer()
            except Exception:  # noqa: BLE001
                log.exception("error in a close hook")
        for obj in (self.audit, self.registry, self.provenance):
            closer = getattr(obj, "close", None)
            if closer is not None:
                try:
                    closer()
                except Exception:  # noqa: BLE001
                    log.exception("error while closing %s", type(obj).__name__)
        self.engine.dispose()


def build_gateway(settings: Settings, *, models: ModelRegistry | None = None) -> Gateway:
    from gateway.bootstrap import ensure_initialised, open_audit_log, open_provenance, open_registry

    ensure_initialised(settings)
    engine = make_engine(settings.resolved_database_url)
    metrics = Metrics()
    registry_models = models or builtin_registry()
    pool = ModelPool(registry_models, threads=settings.model_threads)
    signature_check = None
    if settings.policy_trust_key is not None:
        from gateway.policy.signing import verifier

        signature_check = verifier(settings.policy_trust_key)
    policies = PolicyManager(
        settings.policies_dir,
        pool,
        policy_name=settings.extra.get("policy_name", "default"),
        signature_check=signature_check,
        on_result=lambda result: metrics.policy_reloads.labels(result).inc(),
    )
    audit = open_audit_log(settings, engine)
    registry = open_registry(settings, engine, pool)
    consent: ConsentLookup = registry if registry is not None else EmptyConsent()
    pipeline = CheckPipeline(consent, metrics, clock=utc_now, model_timeout_s=settings.model_timeout_s)
    gw = Gateway(
        settings=settings, engine=engine, apikeys=ApiKeyStore(engine, settings.operator_tenant), metrics=metrics,
        models=registry_models, pool=pool, policies=policies, pipeline=pipeline, audit=audit, consent=consent,
        limits=MediaLimits(settings.max_upload_bytes, settings.max_pixels, settings.working_max_side),
        registry=registry,
    )
    gw.provenance = open_provenance(settings, engine, pool)
    if registry is not None:
        def attach_face_models(active: ActivePolicy) -> None:
            faces = {active.runtime.face.info.name: active.runtime.face}
            faces.update({rt.face.info.name: rt.face for rt in active.overlay_runtimes.values()})
            registry.face_analyzers.update(faces)

        def face_models_ready(active: ActivePolicy) -> None:
            """Refuse a bundle whose face model lacks templates for enrolled subjects: they would
            match nobody (fail open). Re-embed first: `consentgate registry reembed --model NAME`."""
            from gateway.policy.loader import PolicyError
            from gateway.registry.switch import face_model_ready

            for rt in [active.runtime, *active.overlay_runtimes.values()]:
                ok, missing = face_model_ready(registry, rt.face.info.name, rt.face.info.version)
                if not ok:
                    raise PolicyError([
                        f"consent.face_model: {missing} enrolled subject(s) have no {rt.face.info.name!r} template "
                        f"at version {rt.face.info.version}; run `consentgate registry reembed --model "
                        f"{rt.face.info.name}` before switching"])

        policies.on_activate = attach_face_models
        policies.validators.append(face_models_ready)
    return gw
