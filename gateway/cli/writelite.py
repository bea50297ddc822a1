"""Why: `registry subject add|erase`, `registry grant` and `registry revoke` are scripted in loops and must start in
< 0.5 s (#22.6); through SQLAlchemy Core (`gateway.cli.writedb`) its import alone is half of that. On the
default SQLite data dir they write here instead, with the standard library's `sqlite3`:

- the registry change and its consent ledger entry commit in ONE transaction (`BEGIN IMMEDIATE`), the entry
  appended by `gateway.audit.sqlite.SqliteLog.append_in` — the statements of `AuditLog.append_in` under the
  same SQLite write lock, so a gateway appending meanwhile waits for the lock and reads the new head; after
  the commit, `SqliteLog.finish` writes the lookup postings and signs a checkpoint as `AuditLog.close` does;
- the rows in SQLAlchemy's stored forms (`writekeys.sqlite_stamp` times, JSON text, 0/1), so the ORM reads
  them back as its own; the subject's key is put into the key store's `keystore_subject_keys` table as
  `KeyStore.put` does (and shredded again as `KeyStore.delete` does if the subject is not written);
- an erasure is `gateway.registry.admin.erase`'s: the subject's key shredded in the key store first (committed
  before the registry transaction opens, so it is gone before any answer), then the same tombstones, deletions,
  counter bumps and `erasure` receipt (with its counts) in one transaction;
- what a subject and a grant are — checks, defaults, ledger fields, the grant guard — comes from the same
  light modules `writedb.RegistryWriter` and the registry service use.

Not here (`open_lite_writer` answers None and the caller takes `writedb`): a database or key store that is
not a SQLite file, a registry older than the ledger, a log not initialised, and checkpoints handed to a
publisher (CONSENTGATE_AUDIT_PUBLISH). tests/cli/test_writedb.py writes through the service, `writedb` and this
module on one database and compares rows, answers and ledger entries, and verifies the log.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway.cli.readdb import GRANT_COLUMNS, ReadError, grant_public, sqlite_path
from gateway.cli.writekeys import sqlite_stamp
from gateway.registry.errors import (
    GrantNotFound,
    RegistryUnavailable,
    SubjectKeyExists,
    SubjectKeyNotFound,
    SubjectNotFound,
)
from gateway.registry.ledger import LedgerAppendFailed, ledger_record
from gateway.registry.records import (
    grant_ledger_fields,
    grant_terms,
    rfc3339,
    subject_created_fields,
    subject_names,
    utcnow,
)

if TYPE_CHECKING:
    from gateway.audit.notes import CheckpointSigner
    from gateway.audit.sqlite import SqliteLog
    from gateway.registry.envelope import SubjectCrypto
    from gateway.settings import Settings

__all__ = ["LiteKeys", "LiteRegistryWriter", "open_lite_writer"]


VOICE_REMOVAL = "voice/"  # the `model` prefix of a voice template's tombstone (`gateway.registry.voices.removal_key`)
# What an erasure deletes, in `admin.erase`'s order (the voice rows first, the subject row last): (count label,
# table, the column naming the subject).
ERASED = (("voice_templates", "registry_voice_templates", "subject_id"),
          ("voice_clips", "registry_voice_clips", "subject_id"),
          ("voice_enrolments", "registry_voice_enrolments", "subject_id"),
          ("face_templates", "registry_face_templates", "subject_id"),
          ("enrolment_images", "registry_enrolment_images", "subject_id"),
          ("enrolments", "registry_enrolments", "subject_id"),
          ("grants", "registry_grants", "subject_id"),
          ("hashes", "registry_hashes", "subject_id"),
          ("access_tokens", "registry_access_tokens", "subject_id"),
          ("erasure_requests", "registry_erasure_requests", "subject_id"),
          ("subjects", "registry_subjects", "id"))


def _stored(value: Any) -> Any:
    return sqlite_stamp(value) if isinstance(value, datetime) else value


class LiteKeys:
    """The key store's wrapped subject keys on a sqlite3 connection in autocommit mode (`WrappedKeys`):
    `gateway.registry.crypto.KeyStore` without SQLAlchemy, each call its own transaction as there."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def put(self, subject_id: str, wrapped: bytes, kek_id: str) -> None:
        try:
            self.conn.execute("INSERT INTO keystore_subject_keys (subject_id, wrapped_key, kek_id, created_at) "
                              "VALUES (?, ?, ?, ?)", (subject_id, wrapped, kek_id, sqlite_stamp(utcnow())))
        except sqlite3.IntegrityError as exc:
            raise SubjectKeyExists(subject_id) from exc
        except sqlite3.Error as exc:
            raise RegistryUnavailable(f"key store unavailable: {type(exc).__name__}") from exc

    def get(self, subject_id: str) -> bytes:
        try:
            row = self.conn.execute("SELECT wrapped_key FROM keystore_subject_keys WHERE subject_id = ?",
                                    (subject_id,)).fetchone()
        except sqlite3.Error as exc:
            raise RegistryUnavailable(f"key store unavailable: {type(exc).__name__}") from exc
        if row is None:
            raise SubjectKeyNotFound(subject_id)
        return bytes(row[0])

    def subject_ids(self) -> list[str]:
        return [str(r[0]) for r in self.conn.execute("SELECT subject_id FROM keystore_subject_keys")]

    def delete(self, subject_id: str) -> bool:
        """As `KeyStore.delete`: the freed page zeroed (secure_delete) and the WAL checkpointed."""
        try:
            self.conn.execute("PRAGMA secure_delete=ON")
            n = self.conn.execute("DELETE FROM keystore_subject_keys WHERE subject_id = ?", (subject_id,)).rowcount
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise RegistryUnavailable(f"key store unavailable: {type(exc).__name__}") from exc
        return bool(n)


class LiteRegistryWriter:
    """`writedb.RegistryWriter` on sqlite3: subjects and grants, each change with its ledger entry in the
    same transaction, then the log's postings and checkpoint (`SqliteLog.finish`)."""

    def __init__(self, settings: Settings, log: SqliteLog, signer: CheckpointSigner, crypto: SubjectCrypto) -> None:
        from gateway.registry.pseudonyms import EndUserPseudonyms

        self.settings = settings
        self.log = log
        self.conn = log.conn
        self.signer = signer
        self.crypto = crypto
        self.pseudonyms = EndUserPseudonyms(crypto)
        self.ledger_tenant = settings.operator_tenant
        self.appended: list[int] = []  # the audit indexes of the last transaction's ledger entries

    @contextmanager
    def transaction(self, *, finish: bool = True) -> Iterator[list[Mapping[str, Any]]]:
        """BEGIN IMMEDIATE … the records appended to the block's list go into the ledger, then COMMIT (or
        ROLLBACK on any error); a committed append is followed by the postings and the checkpoint (`finish=False`:
        the caller calls `self.log.finish` once after several transactions, as `AuditLog.close` after a run)."""
        records: list[Mapping[str, Any]] = []
        self.appended = []
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield records
            if records:
                try:
                    self.appended = [index for index, _ in self.log.append_in(records)]
                except Exception as exc:  # noqa: BLE001 - whatever the log raised, the change must not happen
                    raise LedgerAppendFailed("the consent ledger entry could not be appended, so nothing was "
                                             f"changed: {exc}") from exc
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        if records and finish:
            self.log.finish(self.signer)

    def record(self, kind: str, subject_id: str, actor: str, **fields: Any) -> dict[str, Any]:
        """A consent-ledger record of this writer's tenant, for `transaction`'s list."""
        return ledger_record(kind, subject_id, actor, self.ledger_tenant, **fields)

    def insert(self, table: str, values: Mapping[str, Any]) -> None:
        """INSERT one row inside the open `transaction` (table and column names are the code's own)."""
        self.conn.execute(f"INSERT INTO {table} ({', '.join(values)}) "  # noqa: S608 (fixed names)
                          f"VALUES ({', '.join('?' * len(values))})", [_stored(v) for v in values.values()])

    def create_subject(self, display_name: str, aliases: Sequence[str], protected: bool, actor: str) -> dict[str, Any]:
        """`RegistryWriter.create_subject`."""
        from gateway.registry.envelope import PROFILE

        name, alias_list = subject_names(display_name, aliases)
        subject_id, now = secrets.token_hex(16), utcnow()
        self.crypto.new_subject_key(subject_id)
        try:
            sealed = self.crypto.encrypt(subject_id, json.dumps({"display_name": name, "aliases": alias_list}).encode(),
                                         PROFILE)
            with self.transaction() as records:
                bumped = self.conn.execute("UPDATE registry_state SET names = names + 1 WHERE id = 1").rowcount
                if not bumped:
                    self.insert("registry_state", {"id": 1, "faces": 0, "names": 1, "hashes": 0})
                self.insert("registry_subjects", {"id": subject_id, "profile_ct": sealed, "protected": int(protected),
                                                   "created_by": actor, "created_at": now})
                records.append(self.record("subject", subject_id, actor,
                                            **subject_created_fields(protected, len(alias_list))))
        except BaseException:
            self.crypto.shred(subject_id)  # no orphan key for a subject that was never written
            raise
        return {"id": subject_id, "display_name": name, "aliases": alias_list, "protected": bool(protected),
                "created_by": actor, "created_at": rfc3339(now), "face_models": [], "template_count": 0,
                "hash_count": 0, "voice_models": [], "voice_template_count": 0}

    def grant(self, subject_id: str, grantee_tenant: str, grantee_end_user: str | None, uses: Sequence[str],
              expires_at: datetime | None, actor: str, *, known_uses: Collection[str] | None,
              allow_new_tenant: bool = False) -> dict[str, Any]:
        """`RegistryWriter.grant`: the guard (unknown uses and tenants refused, #22.4), then the grant."""
        from gateway.registry.grant_guard import GrantGuard

        held = {str(r[0]) for r in self.conn.execute("SELECT DISTINCT tenant FROM apikeys")}
        tenants = held | {self.settings.operator_tenant, *self.settings.tenants}  # writedb.known_tenants
        GrantGuard(lambda: known_uses, lambda: tenants).check(grantee_tenant, uses, allow_new_tenant=allow_new_tenant)
        now = utcnow()
        terms = grant_terms(grantee_tenant, grantee_end_user, uses, expires_at, None, now)
        grant_id = secrets.token_hex(16)
        with self.transaction() as records:
            if self.conn.execute("SELECT id FROM registry_subjects WHERE id = ?", (subject_id,)).fetchone() is None:
                raise SubjectNotFound(subject_id)
            self.insert("registry_grants", {
                "id": grant_id, "subject_id": subject_id, "grantee_tenant": terms.grantee_tenant,
                "grantee_end_user": terms.grantee_end_user, "uses": json.dumps(terms.uses),
                "valid_from": terms.valid_from, "expires_at": terms.expires_at, "revoked_at": None,
                "revoked_by": None, "created_by": actor, "created_at": now})
            end_user = (self.pseudonyms.pseudonym(terms.grantee_tenant, terms.grantee_end_user)
                        if terms.grantee_end_user is not None else None)
            records.append(self.record("grant", subject_id, actor, grant=grant_ledger_fields(
                grant_id, terms.grantee_tenant, end_user, terms.uses, terms.valid_from, terms.expires_at)))
            public = self._grant(grant_id)
        return public

    def revoke(self, grant_id: str, actor: str) -> dict[str, Any]:
        """`RegistryWriter.revoke`: idempotent — only the first revocation is written, with its entry."""
        with self.transaction() as records:
            now = utcnow()
            changed = self.conn.execute(
                "UPDATE registry_grants SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL",
                (sqlite_stamp(now), actor, grant_id)).rowcount
            public = self._grant(grant_id)
            if changed:
                records.append(self.record("revocation", public["subject_id"], actor, grant_id=grant_id,
                                            revoked_at=rfc3339(now)))
        return public

    def erase(self, subject_id: str, actor: str, *, kind: str = "erasure", extra: Mapping[str, Any] | None = None,
              finish: bool = True) -> dict[str, Any]:
        """`admin.erase`: crypto-shred the subject's key (its own committed transaction in the key store, as
        `KeyStore.delete`: secure_delete, WAL truncated), then in ONE transaction bump the counters replicas
        poll, tombstone the face and voice templates, delete the subject's rows in the service's order, and
        append the `erasure` receipt with the counts. If the append fails the rows stay, unreadable, and
        erasing again completes the deletion with its receipt — as in the service. `kind` and `extra` as
        `admin.erase`'s (retention erases with kind `retention`); `finish=False`: see `_transaction`."""
        if self.conn.execute("SELECT id FROM registry_subjects WHERE id = ?", (subject_id,)).fetchone() is None:
            raise SubjectNotFound(subject_id)
        key_destroyed = self.crypto.shred(subject_id)  # privacy first: every sealed row is noise from here on
        counts: dict[str, int] = {}
        with self.transaction(finish=finish) as records:
            if not self.conn.execute("UPDATE registry_state SET faces = faces + 1, names = names + 1, "
                                     "hashes = hashes + 1 WHERE id = 1").rowcount:
                self.insert("registry_state", {"id": 1, "faces": 1, "names": 1, "hashes": 1})
            for table, prefix in (("registry_face_templates", ""), ("registry_voice_templates", VOICE_REMOVAL)):
                rows = self.conn.execute(f"SELECT seq, model FROM {table} WHERE subject_id = ?",  # noqa: S608
                                         (subject_id,)).fetchall()
                self.conn.executemany("INSERT INTO registry_template_removals (template_seq, model) VALUES (?, ?)",
                                      [(seq or 0, prefix + model) for seq, model in rows])
            for label, table, column in ERASED:
                counts[label] = self.conn.execute(f"DELETE FROM {table} WHERE {column} = ?",  # noqa: S608
                                                  (subject_id,)).rowcount
            counts["subject_keys"] = int(key_destroyed)
            receipt = self.record(kind, subject_id, actor, receipt_id=secrets.token_hex(16), counts=counts,
                                   **(extra or {}))
            records.append(receipt)
        return {**receipt, "audit": {"index": self.appended[0] if self.appended else None}}

    def _grant(self, grant_id: str) -> dict[str, Any]:
        row = self.conn.execute(f"SELECT {', '.join(GRANT_COLUMNS)} FROM registry_grants WHERE id = ?",  # noqa: S608
                                (grant_id,)).fetchone()
        if row is None:
            raise GrantNotFound(grant_id)
        return grant_public(dict(zip(GRANT_COLUMNS, row, strict=True)))


def _file(url: str) -> str | None:
    try:
        return sqlite_path(url)
    except ReadError:
        return None


@contextmanager
def open_lite_writer(settings: Settings) -> Iterator[LiteRegistryWriter | None]:
    """The data dir's registry for writing through sqlite3, or None (nothing opened) when this path does
    not apply (see the module docstring) and the caller must take `writedb.open_writer`."""
    from gateway.audit.errors import AuditConfigError, AuditNotFound
    from gateway.audit.notes import load_signer
    from gateway.audit.sqlite import SqliteLog, connect
    from gateway.registry.envelope import FileKek, SubjectCrypto

    db, keystore = _file(settings.resolved_database_url), _file(settings.resolved_keystore_url)
    if db is None or keystore is None or settings.extra.get("audit_publish"):
        yield None
        return
    opened: list[sqlite3.Connection] = []
    try:
        try:
            conn, keys = connect(db, readonly=False), connect(keystore, readonly=False)
            opened += [conn, keys]
            conn.execute("PRAGMA foreign_keys=ON")  # as gateway.db opens SQLite
            log = SqliteLog(conn, origin=settings.audit_origin)
            head = log.head()
            ready = conn.execute("SELECT id FROM registry_ledger_state WHERE id = 1").fetchone() is not None
        except (AuditConfigError, AuditNotFound, sqlite3.Error):
            ready = False  # no file, log or ledger tables yet: the Core path creates or reports them
        if not ready:
            yield None
            return
        if head.origin != settings.audit_origin:
            raise AuditConfigError(f"tables hold the log {head.origin!r}, not {settings.audit_origin!r}")
        signer = load_signer(settings.keys_dir / "audit_ed25519.key", settings.audit_origin)
        crypto = SubjectCrypto(FileKek(settings.keys_dir / "kek.key"), LiteKeys(keys))
        yield LiteRegistryWriter(settings, log, signer, crypto)
    finally:
        for c in opened:
            c.close()
