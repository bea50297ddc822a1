"""Why: the consent ledger. Who consented to what, and when, must not be rewritable by whoever holds
the database, so every registry mutation (a subject created, an enrolment, a grant, a revocation, an
expiry, a hash-list addition, an erasure, a retention deletion) is also an entry in the signed audit
log, appended *inside the mutation's own transaction*: if the append fails the change is rolled back,
and a change never exists without its entry. Entries carry ids, counts, versions and times — never
names, images or templates (gateway/audit/SPEC.md §9 lists the shapes).

The registry sees the log through the narrow `Ledger` port (an `AuditLog` satisfies it), so this
layer imports nothing of the audit package.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from gateway.registry.errors import RegistryUnavailable
from gateway.registry.records import rfc3339, utcnow

if TYPE_CHECKING:  # types only: the CLI's write path builds records here without the ORM (#22.6)
    from sqlalchemy.engine import Connection
    from sqlmodel import Session

__all__ = ["KINDS", "Ledger", "LedgerAppendFailed", "append_entry", "append_on", "digest_of", "ledger_record"]

KINDS = ("subject", "enrolment", "grant", "revocation", "expiry", "hash", "erasure", "retention", "snapshot")


class Ledger(Protocol):
    """Appends records in the caller's open transaction on `conn`; raises on failure (the caller
    rolls back). `gateway.audit.AuditLog.append_in` is the implementation."""

    def append_in(self, conn: Connection, records: Sequence[Mapping[str, Any]]) -> Sequence[Any]: ...


class LedgerAppendFailed(RegistryUnavailable):
    """The ledger entry could not be appended, so the registry change was not made (503)."""


def digest_of(values: Sequence[str]) -> str:
    """SHA-256 (hex) of the sorted values joined by newlines: a commitment to a list (e.g. of PDQ
    hashes) that the log can carry without carrying the list."""
    return hashlib.sha256("\n".join(sorted(values)).encode()).hexdigest()


def ledger_record(kind: str, subject_id: str, actor: str, tenant: str, *, at: datetime | None = None,
                  **fields: Any) -> dict[str, Any]:
    """A ledger record: `{kind, subjects: [id], subject_id, tenant, actor, created_at, ...fields}`."""
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    record: dict[str, Any] = {
        "kind": kind,
        "subjects": [subject_id],
        "tenant": tenant,
        "actor": actor,
        "created_at": rfc3339(at or utcnow()),
    }
    record.update({k: v for k, v in fields.items() if v is not None})
    return record


def append_entry(ledger: Ledger | None, session: Session, records: Sequence[Mapping[str, Any]]) -> list[int]:
    """Append `records` inside `session`'s transaction; returns their audit indexes. Without a ledger
    (a bare registry in unit tests) nothing is appended. Raises LedgerAppendFailed: the caller's
    session must not commit (leaving its `with Session(...)` block without commit rolls back)."""
    if ledger is None or not records:
        return []
    return append_on(ledger, session.connection(), records)


def append_on(ledger: Ledger, conn: Connection, records: Sequence[Mapping[str, Any]]) -> list[int]:
    """`append_entry` on an open SQLAlchemy Core transaction (`conn`), for writers without the ORM
    (the CLI's write path). Raises LedgerAppendFailed: the caller must roll back."""
    try:
        results = ledger.append_in(conn, records)
    except Exception as exc:  # noqa: BLE001 - whatever the log raised, the change must not happen
        raise LedgerAppendFailed(f"the consent ledger entry could not be appended, so nothing was changed: {exc}"
                                 ) from exc
    return [int(getattr(r, "index", -1)) for r in results]
