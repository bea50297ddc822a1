"""Why: "what was made under my consent?" is the question the person in the picture, their lawyer and
the registrar ask, and the answer must be checkable, not just listed. A *use* is one decision that
involved a subject (or was made under one grant), shown with what it produced — output digests,
watermark ids, manifest digests — and the receipt that proves it is in the signed log: audit index,
leaf hash, inclusion proof and signed checkpoint (`consentgate audit prove inclusion`). The same
items serve `GET /v1/subjects/{id}/uses`, `GET /v1/grants/{id}/uses`, the revoke response, the
subject's own token and `consentgate registry uses --grant`. Shape: docs/api.md "Uses".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from gateway.audit.values import AuditEntry

MAX_SCAN_PAGES = 50  # a grant's uses are filtered from its subject's decisions: bound one request's work


def _values(node: Any, key: str) -> Iterator[str]:
    if isinstance(node, Mapping):
        for k, v in node.items():
            if k == key and isinstance(v, str):
                yield v
            else:
                yield from _values(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _values(item, key)


def grant_ids_of(record: Mapping[str, Any]) -> list[str]:
    """Every grant id a decision record names (faces, voices, prompt names), in order, once each."""
    return list(dict.fromkeys(_values(record.get("findings") or {}, "grant_id")))


def use_item(entry: AuditEntry, receipt: Mapping[str, Any] | None, *, with_record: bool) -> dict[str, Any]:
    """One use. `inclusion_proof` is the list of hex hashes as in `/v1/audit/entries/{i}` (None while no
    checkpoint covers it), `receipt` the self-contained proof. `record` (the whole decision, which may
    name other subjects) only for operator keys."""
    r = entry.record
    outputs = [
        {k: o.get(k) for k in ("media_index", "sha256", "watermark_id", "manifest_digest")}
        for o in (r.get("outputs") or []) if isinstance(o, Mapping)
    ]
    item: dict[str, Any] = {
        "decision_id": r.get("decision_id"),
        "created_at": r.get("created_at"),
        "tenant": r.get("tenant"),
        "use": r.get("use"),
        "stage": r.get("stage"),
        "decision": r.get("decision"),
        "grant_ids": grant_ids_of(r),
        "outputs": outputs,
        "index": entry.index,
        "leaf_hash": entry.leaf_hash.hex(),
        "checkpoint_pending": receipt is None,
        "inclusion_proof": None if receipt is None else list(receipt["inclusion_proof"]["hashes"]),
        "receipt": None if receipt is None else dict(receipt),
    }
    if with_record:
        item["record"] = entry.to_record()
    return item


class UsesSource(Protocol):
    """What a page of uses reads: `gateway.audit.AuditLog`, or `gateway.audit.sqlite.SqliteLog` (the CLI on
    a SQLite data dir, without SQLAlchemy's import: #22.6)."""

    def query(self, *, subject: str | None = None, kind: str | None = None, cursor: str | None = None,
              limit: int = 100) -> tuple[list[AuditEntry], str | None]: ...

    def receipts(self, indexes: Sequence[int]) -> dict[int, dict[str, Any]]: ...


def uses_page(log: UsesSource, *, subject_id: str, grant_id: str | None = None, cursor: str | None = None,
              limit: int = 100, with_record: bool = False) -> dict[str, Any]:
    """A page of the subject's decisions (only those made under `grant_id` when given), oldest first,
    with receipts. `next_cursor` resumes after the last entry this page looked at."""
    items: list[AuditEntry] = []
    position, exhausted = cursor, False
    for _ in range(MAX_SCAN_PAGES):
        page, more = log.query(subject=subject_id, kind="decision", cursor=position,
                               limit=limit if grant_id is None else 500)
        last = page[-1].index if page else None
        for entry in page:
            position = str(entry.index)
            if grant_id is None or grant_id in grant_ids_of(entry.record):
                items.append(entry)
                if len(items) == limit:
                    break
        if len(items) == limit:
            exhausted = more is None and items[-1].index == last
            break
        if more is None:
            exhausted = True
            break
    receipts = log.receipts([e.index for e in items])
    return {
        "subject_id": subject_id,
        **({"grant_id": grant_id} if grant_id is not None else {}),
        "uses": [use_item(e, receipts.get(e.index), with_record=with_record) for e in items],
        "next_cursor": None if exhausted else position,
    }
