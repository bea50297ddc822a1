"""Why: the registry commands that write without a model — `registry subject add`, `registry grant|revoke` —
are called by scripts in loops, like the list commands, and must start in < 0.5 s (#22.6). Through the
registry service they cost ~0.9–1.0 CPU-s before the first row (SQLModel, numpy, the model registry for
the PDQ hasher, the policy schema). This module writes the same rows with SQLAlchemy Core on PostgreSQL
(the consent ledger, i.e. the audit log, is a Core library and needs a Core connection), and on a SQLite
database that `gateway.cli.writelite` (the standard library's sqlite3, the default data dir's path) does not
take — a registry older than the ledger, a publisher for checkpoints; the API key commands use its `apikeys`
table on PostgreSQL (`gateway.cli.writekeys`):

- the tables below declare only the columns these commands write, with the ORM tables' column types
  (`tests/cli/test_writedb.py` compares them with `gateway.apikeys` / `gateway.registry.models`);
- what a key, a subject and a grant are — checks, defaults, the ledger fields — comes from the same
  light modules the ORM paths use (`gateway.apikey_rules`, `gateway.registry.records`,
  `gateway.registry.ledger`), so both write the same rows and ledger entries (the test writes through
  both on one database, compares rows and ledger records field by field, and verifies the log);
- a registry change and its ledger entry commit in one transaction, as in the service; a database
  whose registry predates the ledger (no `registry_ledger_state` row) is not written here: the caller
  opens the registry service, which writes the one-time snapshot first.

A grant's uses must be the policy's (#22.4): `gateway.cli.policyuses` (re-exported here) keeps the uses of
the last bundle validated, keyed by the bundle's digest.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.cli.policyuses import policy_uses
from gateway.cli.readdb import GRANT_COLUMNS, grant_public
from gateway.registry.errors import GrantNotFound, SubjectNotFound
from gateway.registry.ledger import append_on, ledger_record
from gateway.registry.records import (
    grant_ledger_fields,
    grant_terms,
    rfc3339,
    subject_created_fields,
    subject_names,
    utcnow,
)

if TYPE_CHECKING:
    from gateway.audit import AuditLog
    from gateway.registry.crypto import SubjectCrypto
    from gateway.registry.pseudonyms import EndUserPseudonyms
    from gateway.settings import Settings

__all__ = [
    "TABLES",
    "RegistryWriter",
    "apikeys",
    "known_tenants",
    "ledger_ready",
    "open_writer",
    "policy_uses",
    "registry_grants",
    "registry_ledger_state",
    "registry_state",
    "registry_subjects",
]

_META = sa.MetaData()
_TS = sa.DateTime(timezone=True)  # aware UTC in; SQLite keeps the text without a zone, as the ORM's types do

apikeys = sa.Table(
    "apikeys",
    _META,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("tenant", sa.String),
    sa.Column("role", sa.String),
    sa.Column("secret_sha256", sa.String),
    sa.Column("name", sa.String),
    sa.Column("created_at", _TS),
    sa.Column("revoked_at", _TS),
    sa.Column("uses", sa.String),
)
registry_subjects = sa.Table(
    "registry_subjects",
    _META,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("profile_ct", sa.LargeBinary),
    sa.Column("protected", sa.Boolean),
    sa.Column("created_by", sa.String),
    sa.Column("created_at", _TS),
)
registry_grants = sa.Table(
    "registry_grants",
    _META,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("subject_id", sa.String),
    sa.Column("grantee_tenant", sa.String),
    sa.Column("grantee_end_user", sa.String),
    sa.Column("uses", sa.JSON),
    sa.Column("valid_from", _TS),
    sa.Column("expires_at", _TS),
    sa.Column("revoked_at", _TS),
    sa.Column("revoked_by", sa.String),
    sa.Column("created_by", sa.String),
    sa.Column("created_at", _TS),
)
registry_state = sa.Table(
    "registry_state",
    _META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("faces", sa.Integer),
    sa.Column("names", sa.Integer),
    sa.Column("hashes", sa.Integer),
)
registry_ledger_state = sa.Table(
    "registry_ledger_state",
    _META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("snapshot_at", _TS),
    sa.Column("snapshot_entries", sa.Integer),
)
TABLES = (apikeys, registry_subjects, registry_grants, registry_state, registry_ledger_state)


def known_tenants(conn: Connection, settings: Settings) -> set[str]:
    """The tenants a grant may name without --allow-new-tenant (as `gateway.bootstrap.grant_guard`): those
    holding an API key (revoked ones too), the declared ones and the operator."""
    held = {str(t) for t in conn.execute(sa.select(apikeys.c.tenant).distinct()).scalars()}
    return held | {settings.operator_tenant, *settings.tenants}


# ---- the registry (gateway.registry.admin without the service) ----
class RegistryWriter:
    """Subjects and grants, each change with its consent ledger entry in the same transaction."""

    def __init__(self, settings: Settings, engine: Engine, log: AuditLog, crypto: SubjectCrypto) -> None:
        from gateway.registry.pseudonyms import EndUserPseudonyms

        self.settings = settings
        self.engine = engine
        self.log = log
        self.crypto = crypto
        self.pseudonyms: EndUserPseudonyms = EndUserPseudonyms(crypto)
        self.ledger_tenant = settings.operator_tenant

    def _append(self, conn: Connection, kind: str, subject_id: str, actor: str, **fields: Any) -> None:
        append_on(self.log, conn, [ledger_record(kind, subject_id, actor, self.ledger_tenant, **fields)])

    def create_subject(self, display_name: str, aliases: Sequence[str], protected: bool, actor: str) -> dict[str, Any]:
        """`admin.create_subject`: a new key in the key store, the sealed profile, the `names` counter
        bumped and the `subject` ledger entry; the key is shredded again if the row is not written."""
        from gateway.registry.envelope import PROFILE

        name, alias_list = subject_names(display_name, aliases)
        subject_id, now = secrets.token_hex(16), utcnow()
        self.crypto.new_subject_key(subject_id)
        try:
            profile = json.dumps({"display_name": name, "aliases": alias_list}).encode()
            sealed = self.crypto.encrypt(subject_id, profile, PROFILE)
            with self.engine.begin() as conn:
                bumped = conn.execute(
                    registry_state.update().where(registry_state.c.id == 1).values(names=registry_state.c.names + 1)
                ).rowcount
                if not bumped:
                    conn.execute(registry_state.insert().values(id=1, faces=0, names=1, hashes=0))
                conn.execute(
                    registry_subjects.insert().values(
                        id=subject_id, profile_ct=sealed, protected=bool(protected), created_by=actor, created_at=now
                    )
                )
                self._append(conn, "subject", subject_id, actor, **subject_created_fields(protected, len(alias_list)))
        except BaseException:
            self.crypto.shred(subject_id)  # no orphan key for a subject that was never written
            raise
        return {
            "id": subject_id,
            "display_name": name,
            "aliases": alias_list,
            "protected": bool(protected),
            "created_by": actor,
            "created_at": rfc3339(now),
            "face_models": [],
            "template_count": 0,
            "hash_count": 0,
            "voice_models": [],
            "voice_template_count": 0,
        }

    def grant(
        self,
        subject_id: str,
        grantee_tenant: str,
        grantee_end_user: str | None,
        uses: Sequence[str],
        expires_at: datetime | None,
        actor: str,
        *,
        known_uses: Collection[str] | None,
        allow_new_tenant: bool = False,
    ) -> dict[str, Any]:
        """`Registry.grant` with its guard (unknown uses and tenants refused, #22.4), then `admin.grant`."""
        from gateway.registry.grant_guard import GrantGuard

        with self.engine.connect() as probe:
            tenants = known_tenants(probe, self.settings)
        GrantGuard(lambda: known_uses, lambda: tenants).check(grantee_tenant, uses, allow_new_tenant=allow_new_tenant)
        now = utcnow()
        terms = grant_terms(grantee_tenant, grantee_end_user, uses, expires_at, None, now)
        grant_id = secrets.token_hex(16)
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(registry_subjects.c.id).where(registry_subjects.c.id == subject_id)).first()
            if found is None:
                raise SubjectNotFound(subject_id)
            conn.execute(
                registry_grants.insert().values(
                    id=grant_id,
                    subject_id=subject_id,
                    grantee_tenant=terms.grantee_tenant,
                    grantee_end_user=terms.grantee_end_user,
                    uses=terms.uses,
                    valid_from=terms.valid_from,
                    expires_at=terms.expires_at,
                    revoked_at=None,
                    revoked_by=None,
                    created_by=actor,
                    created_at=now,
                )
            )
            end_user = (
                self.pseudonyms.pseudonym(terms.grantee_tenant, terms.grantee_end_user)
                if terms.grantee_end_user is not None
                else None
            )
            self._append(
                conn,
                "grant",
                subject_id,
                actor,
                grant=grant_ledger_fields(
                    grant_id, terms.grantee_tenant, end_user, terms.uses, terms.valid_from, terms.expires_at
                ),
            )
            return self._grant(conn, grant_id)

    def revoke(self, grant_id: str, actor: str) -> dict[str, Any]:
        """`admin.revoke`: idempotent — the first revocation's time and actor stand, and only it has a
        `revocation` ledger entry."""
        with self.engine.begin() as conn:
            now = utcnow()
            changed = conn.execute(
                registry_grants.update()
                .where(registry_grants.c.id == grant_id, registry_grants.c.revoked_at.is_(None))
                .values(revoked_at=now, revoked_by=actor)
            ).rowcount
            public = self._grant(conn, grant_id)
            if changed:
                self._append(
                    conn, "revocation", public["subject_id"], actor, grant_id=grant_id, revoked_at=rfc3339(now)
                )
            return public

    @staticmethod
    def _grant(conn: Connection, grant_id: str) -> dict[str, Any]:
        row = (
            conn.execute(
                sa.select(*(registry_grants.c[c] for c in GRANT_COLUMNS)).where(registry_grants.c.id == grant_id)
            )
            .mappings()
            .first()
        )
        if row is None:
            raise GrantNotFound(grant_id)
        return grant_public(dict(row))


def ledger_ready(engine: Engine) -> bool:
    """False when the registry predates the consent ledger (no `registry_ledger_state` row): its one-time
    snapshot entries must come first, and the registry service writes them when it opens."""
    with engine.connect() as conn:
        query = sa.select(registry_ledger_state.c.id).where(registry_ledger_state.c.id == 1)
        return conn.execute(query).first() is not None


@contextmanager
def open_writer(settings: Settings) -> Iterator[RegistryWriter | None]:
    """The data dir's registry for writing: its database, key store (KEK-wrapped subject keys) and audit
    log, opened as the gateway opens them; the log is closed last, publishing a checkpoint that covers
    the entries appended here. None (nothing opened) when the ledger is not ready (`ledger_ready`)."""
    from gateway.bootstrap import kek_path, open_audit_log
    from gateway.db import make_engine
    from gateway.registry.crypto import FileKek, KeyStore, SubjectCrypto

    engine = make_engine(settings.resolved_database_url)
    if not ledger_ready(engine):
        engine.dispose()
        yield None
        return
    keystore = make_engine(settings.resolved_keystore_url)
    try:
        log = open_audit_log(settings, engine)
        try:
            yield RegistryWriter(settings, engine, log, SubjectCrypto(FileKek(kek_path(settings)), KeyStore(keystore)))
        finally:
            log.close()
    finally:
        keystore.dispose()
        engine.dispose()
