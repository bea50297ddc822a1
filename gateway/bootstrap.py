"""Why: `consentgate init` and `serve` must leave a gateway someone can call on a fresh machine:
data dir, database tables, the key-encryption key, the audit signing key and a development C2PA
PKI — created once, idempotently, with 0600 key files. This module does that and opens the
stateful subsystems (audit log, registry, provenance) for the composition root (`gateway.context`)
and the CLI, each as its own typed object."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from gateway.audit import AppendResult, AuditLog, generate_signing_key, load_signer
from gateway.audit.publish import BackgroundPublisher, publisher_for
from gateway.db import make_engine
from gateway.registry.retention_plan import LogActivity
from gateway.settings import Settings

if TYPE_CHECKING:  # the registry, policy runtime and provenance are imported where they are opened, so that
    # `open_audit_log` (the CLI's audit and uses commands) does not import the models (start-up, #22.6)
    from gateway.policy.loader import PolicyBundle
    from gateway.policy.manager import ActivePolicy, PolicyManager
    from gateway.policy.runtime import ModelPool
    from gateway.policy.schema import RetentionSettings
    from gateway.provenance.service import ProvenanceService
    from gateway.registry.grant_guard import GrantGuard
    from gateway.registry.ledger import Ledger
    from gateway.registry.pseudonyms import EndUserPseudonyms
    from gateway.registry.service import Registry

__all__ = ["audit_key_path", "bundle_uses", "c2pa_dir", "ensure_initialised", "grant_guard", "kek_path", "migrate",
           "open_audit_log", "open_provenance", "open_registry"]


def audit_key_path(settings: Settings) -> Path:
    return settings.keys_dir / "audit_ed25519.key"


def kek_path(settings: Settings) -> Path:
    return settings.keys_dir / "kek.key"


def c2pa_dir(settings: Settings) -> Path:
    return settings.keys_dir / "c2pa"


def ensure_initialised(settings: Settings) -> dict[str, Any]:
    """Create whatever is missing; never overwrite what exists. Returns what was created."""
    from gateway.provenance.keys import init_dev_pki
    from gateway.registry.crypto import FileKek

    created: dict[str, Any] = {}
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)
    settings.keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.keys_dir, 0o700)
    if not audit_key_path(settings).exists():
        generate_signing_key(audit_key_path(settings))
        created["audit_key"] = str(audit_key_path(settings))
    if not kek_path(settings).exists():
        FileKek.create(kek_path(settings))
        created["kek"] = str(kek_path(settings))
    pki = init_dev_pki(c2pa_dir(settings))
    created["c2pa"] = str(pki.signing_cert_chain)
    migrate(settings)
    for name in ("consentgate.db", "keys.db"):
        path = settings.data_dir / name
        if path.exists():
            os.chmod(path, 0o600)
    return created


def migrate(settings: Settings) -> None:
    """Bring the database schema to head (Alembic), and the key store's own table."""
    from gateway.migrations import upgrade_head
    from gateway.registry.crypto import KeyStore

    upgrade_head(settings.resolved_database_url)
    ks_engine = make_engine(settings.resolved_keystore_url)
    try:
        KeyStore(ks_engine).create_tables()
    finally:
        ks_engine.dispose()


def open_audit_log(settings: Settings, engine: Engine) -> AuditLog:
    signer = load_signer(audit_key_path(settings), settings.audit_origin)
    log = AuditLog(
        engine,
        signer,
        origin=settings.audit_origin,
        checkpoint_every=settings.audit_checkpoint_every,
        checkpoint_interval_ms=settings.audit_checkpoint_interval_ms,
    )
    log.create_tables()  # the audit library's own idempotent open: WAL mode and the head row
    target = settings.extra.get("audit_publish")
    if target:  # CONSENTGATE_AUDIT_PUBLISH: every signed checkpoint to a directory or a URL (witnesses)
        log.set_publisher(BackgroundPublisher(publisher_for(target)))
    return log


def open_registry(settings: Settings, engine: Engine, pool: ModelPool, *, ledger: Ledger | None = None) -> Registry:
    """The consent registry: templates in the main database, subject keys in the separate key
    store, wrapped by the KEK file. Face analyzers are attached when a policy activates. With
    `ledger` (the audit log, on the same database) every mutation is a ledger entry appended in its
    own transaction, and a registry that predates the ledger gets its one-time snapshot entries."""
    from gateway.policy.schema import ModelSpec
    from gateway.registry.crypto import FileKek, KeyStore, SubjectCrypto
    from gateway.registry.service import Registry

    keystore_engine = make_engine(settings.resolved_keystore_url)
    crypto = SubjectCrypto(FileKek(kek_path(settings)), KeyStore(keystore_engine))
    registry = Registry(engine, crypto, {}, pool.hasher(ModelSpec(adapter="pdq")))
    if ledger is not None:
        registry.attach_ledger(ledger, settings.operator_tenant)
        registry.snapshot_ledger()
    return registry


def open_provenance(settings: Settings, engine: Engine, pool: ModelPool | None = None) -> ProvenanceService:
    from gateway.policy.schema import ModelSpec
    from gateway.provenance.service import ProvenanceService

    service = ProvenanceService.open(settings, engine, c2pa_dir(settings))
    if pool is not None:
        service.hasher = pool.hasher(ModelSpec(adapter="pdq"))
    return service


def bundle_uses(active: ActivePolicy | PolicyBundle | None) -> set[str] | None:
    """The uses a bundle defines (its base policy and every tenant overlay); None without one."""
    from gateway.policy.manager import ActivePolicy

    if active is None:
        return None
    bundle = active.bundle if isinstance(active, ActivePolicy) else active
    return {use for policy in (bundle.policy, *bundle.overlays.values()) for use in policy.uses}


def grant_guard(settings: Settings, engine: Engine, uses: Callable[[], Collection[str] | None]) -> GrantGuard:
    """What a grant may name (gateway.registry.grant_guard): USES, and the tenants that hold an API
    key (revoked ones too: the tenant still exists), are declared in settings, or operate the gateway."""
    from gateway.apikeys import ApiKeyStore
    from gateway.registry.grant_guard import GrantGuard

    keys = ApiKeyStore(engine, settings.operator_tenant)

    def tenants() -> set[str]:
        return {k.tenant for k in keys.list()} | {settings.operator_tenant, *settings.tenants}

    return GrantGuard(uses, tenants)


class AuditActivity(LogActivity):
    """The retention engine's view of the audit log (registry.retention.Activity): when a decision
    last matched a subject, and which grants already have an `expiry` entry (`LogActivity`, which the
    CLI's sqlite3 path uses over `SqliteLog`)."""

    def __init__(self, log: AuditLog) -> None:
        super().__init__(log)


def start_retention(registry: Registry, log: AuditLog, policies: PolicyManager) -> None:
    """The retention sweeper of a serving process (one replica at a time, under a lease), with the
    active policy's `retention:` section read at each sweep."""

    def rules() -> RetentionSettings | None:
        active = policies.active
        return None if active is None else active.bundle.policy.retention

    registry.start_retention_sweeper(rules, AuditActivity(log), lambda: datetime.now(UTC))


class AuditDecisions:
    """The pipeline's `DecisionLookup`: a decision of one tenant by id, from the audit log's indexed
    `decision_id` column (as `/v1/audit/receipts/{decision_id}` finds it)."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def find_decision(self, decision_id: str, tenant: str) -> Mapping[str, Any] | None:
        found, _ = self.log.query(decision_id=decision_id, tenant=tenant, kind="decision", limit=1)
        return found[0].record if found else None


class PseudonymisingSink:
    """The pipeline's audit sink: a decision's `end_user` goes into the log as its tenant's keyed
    hash (gateway/registry/pseudonyms.py), never in clear. A key store that cannot answer fails the
    append, so the decision fails closed."""

    def __init__(self, log: AuditLog, pseudonyms: EndUserPseudonyms) -> None:
        self.log = log
        self.pseudonyms = pseudonyms

    def append(self, record: Mapping[str, Any]) -> AppendResult:
        end_user, tenant = record.get("end_user"), record.get("tenant")
        if isinstance(end_user, str) and end_user and isinstance(tenant, str):
            record = {**record, "end_user": self.pseudonyms.pseudonym(tenant, end_user)}
        return self.log.append(record)
