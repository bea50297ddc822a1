"""Why: auditors query the signed log and take proofs away to check offline. Auditor and admin
keys only; an operator auditor sees every entry, another tenant's auditor only its own entries;
proofs and checkpoints are global (they reveal hashes, not records)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import Auditor, GatewayDep, role
from gateway.apikeys import Principal
from gateway.audit.errors import ProofError
from gateway.audit.reader import AuditEntry, AuditQuery
from gateway.context import Gateway
from gateway.errors import BadInput, Conflict, NotFound
from gateway.pipeline.record import caller_view

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def _entry_json(entry: AuditEntry, scope: str | None = None) -> dict[str, Any]:
    """An entry as JSON; for a tenant's auditor (`scope`) a decision record in the caller's view —
    the view its generators get (no unmatched subject ids, similarities or hash distances; #15.6).
    Its leaf hash and inclusion proof still prove the full record is in the log."""
    record = dict(entry.record)
    if scope is not None and record.get("kind", "decision") == "decision":
        record = caller_view(record, tenant=scope, is_operator=False)
    checkpoint = entry.checkpoint
    record["audit"] = {
        "index": entry.index,
        "leaf_hash": entry.leaf_hash.hex() if isinstance(entry.leaf_hash, bytes) else entry.leaf_hash,
        "checkpoint": checkpoint.as_dict() if checkpoint is not None and hasattr(checkpoint, "as_dict") else None,
    }
    out: dict[str, Any] = {"index": entry.index, "record": record, "checkpoint_pending": checkpoint is None}
    if entry.inclusion_proof is not None:
        out["inclusion_proof"] = [h.hex() for h in entry.inclusion_proof]
    return out


def _scope(gw: Gateway, principal: Principal) -> str | None:
    return None if principal.is_operator(gw.settings.operator_tenant) else principal.tenant


@router.get("/entries")
async def entries(
    gw: GatewayDep,
    principal: Auditor,
    since: str | None = None,
    until: str | None = None,
    tenant: str | None = None,
    decision: str | None = None,
    subject: str | None = None,
    use: str | None = None,
    kind: str | None = None,
    end_user: Annotated[str | None, Query(max_length=256, description="Your end user's clear id (needs the "
                                          "tenant): matched against the keyed hash the log holds.")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    model: Annotated[str | None, Query(max_length=200, description="entries whose findings name this model "
                                       "(its name or adapter); 3,000 entries are scanned per request: "
                                       "a page may hold fewer entries than `limit` and still have a next_cursor")]
    = None,
    order: Annotated[Literal["oldest", "newest"], Query(description="log order (default) or newest first; "
                                                                   "send the same order with its cursor")]
    = "oldest",
) -> dict[str, Any]:
    scope = _scope(gw, principal)
    if scope is not None:
        if tenant is not None and tenant != scope:
            return {"entries": [], "next_cursor": None}
        tenant = scope
    query = AuditQuery(since=since, until=until, tenant=tenant, decision=decision, subject=subject, use=use,
                       kind=kind, cursor=cursor, limit=limit, descending=order == "newest")
    try:
        if end_user is not None:
            if tenant is None:
                raise BadInput("end_user needs the tenant whose end user it is (tenant=...)")
            page, next_cursor = await run_in_threadpool(_by_end_user, gw, query, tenant, end_user, model)
        elif model is not None:
            page, next_cursor = await run_in_threadpool(_scan, gw, query, lambda r: _names_model(r, model),
                                                        MODEL_SCAN_PAGES)
        else:
            page, next_cursor = await run_in_threadpool(lambda: gw.audit.query(**query.as_kwargs()))
    except ValueError as exc:
        raise BadInput(f"bad filter: {exc}") from None
    return {"entries": [_entry_json(e, scope) for e in page], "next_cursor": next_cursor}


MAX_SCAN_PAGES = 50
# The model filter reads at most 3,000 entries per request (~0.8 s on 2 loaded cores at 1M entries, measured
# with bench/console_pages.py): pages come back short, with a cursor, rather than slow.
MODEL_SCAN_PAGES = 3


def _names_model(record: Mapping[str, Any], model: str) -> bool:
    """Whether any finding of the record was made by `model` (its policy name or its adapter)."""
    def walk(node: Any) -> bool:
        if isinstance(node, Mapping):
            if model in (node.get("model"), node.get("adapter")):
                return True
            return any(walk(v) for v in node.values())
        return isinstance(node, list) and any(walk(v) for v in node)

    return walk(record.get("findings") or {})


def _by_end_user(gw: Gateway, query: AuditQuery, tenant: str, end_user: str,
                 model: str | None = None) -> tuple[list[AuditEntry], str | None]:
    """The tenant's entries whose `end_user` is this end user's keyed hash (under the tenant's current
    key; nothing once the key was destroyed), scanning the tenant's entries a page at a time."""
    if gw.registry is None:
        return [], None
    pseudonym = gw.registry.pseudonyms.pseudonym(tenant, end_user, create=False)
    if pseudonym is None:
        return [], None
    return _scan(gw, query, lambda r: r.get("end_user") == pseudonym and (model is None or _names_model(r, model)))


def _scan(gw: Gateway, query: AuditQuery, keep: Callable[[Mapping[str, Any]], bool],
          max_pages: int = MAX_SCAN_PAGES) -> tuple[list[AuditEntry], str | None]:
    """Entries matching the query's filters and `keep` (a test no query column answers), reading at most
    `max_pages` pages of 1000; the cursor resumes after the last entry looked at."""
    found: list[AuditEntry] = []
    kwargs = {**query.as_kwargs(), "limit": 1000}
    position = query.cursor
    for _ in range(max_pages):
        page, more = gw.audit.query(**{**kwargs, "cursor": position})
        for entry in page:
            position = str(entry.index)
            if keep(entry.record):
                found.append(entry)
                if len(found) == query.limit:
                    last = page[-1].index == entry.index and more is None
                    return found, None if last else position
        if more is None:
            return found, None
    return found, position


@router.get("/entries/{index}")
async def entry(index: Annotated[int, Path(ge=0, lt=2**63)], gw: GatewayDep, principal: Auditor) -> dict[str, Any]:
    scope = _scope(gw, principal)
    try:
        found = await run_in_threadpool(gw.audit.entry, index)
    except (LookupError, ValueError) as exc:
        raise NotFound(f"no audit entry {index}") from exc
    if scope is not None and found.record.get("tenant") != scope:
        raise NotFound(f"no audit entry {index}")
    return _entry_json(found, scope)


ReceiptReader = Annotated[Principal, Depends(role("generator", "auditor"))]


@router.get("/receipts/{decision_id}")
async def receipt(
    decision_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")],
    gw: GatewayDep, principal: ReceiptReader,
) -> dict[str, Any]:
    """The receipt of a decision of the caller's own tenant (any tenant for operator keys): leaf
    hash, index, inclusion proof and the signed checkpoint it leads to — checkable offline with
    the log's public key (`consentgate audit prove inclusion`). 409 `checkpoint_pending` (with
    Retry-After) until a checkpoint covers the entry; 404 for another tenant's decision."""
    scope = _scope(gw, principal)

    def find() -> dict[str, Any]:
        found, _ = gw.audit.query(decision_id=decision_id, tenant=scope, kind="decision", limit=1)
        if not found:
            raise NotFound(f"no decision {decision_id}")
        return gw.audit.receipt(found[0].index)

    try:
        out = await run_in_threadpool(find)
    except ProofError as exc:
        raise Conflict(str(exc), code="checkpoint_pending", headers={"Retry-After": "1"}) from None
    return {"decision_id": decision_id, **out}


@router.get("/checkpoint")
async def checkpoint(gw: GatewayDep, _: Auditor) -> dict[str, Any]:
    cp = await run_in_threadpool(gw.audit.latest_checkpoint)
    if cp is None:
        raise NotFound("no checkpoint has been published yet")
    return cp.as_dict() if hasattr(cp, "as_dict") else dict(cp.__dict__)


@router.get("/proofs/inclusion")
async def inclusion(
    gw: GatewayDep, _: Auditor, index: Annotated[int, Query(ge=0, lt=2**63)],
    tree_size: Annotated[int | None, Query(ge=0, lt=2**63)] = None,
) -> dict[str, Any]:
    try:
        proof = await run_in_threadpool(gw.audit.inclusion_proof, index, tree_size)
    except (LookupError, ValueError) as exc:
        raise BadInput(str(exc)) from None
    return proof.as_dict()


@router.get("/proofs/consistency")
async def consistency(
    gw: GatewayDep, _: Auditor, first: Annotated[int, Query(ge=0, lt=2**63)],
    second: Annotated[int, Query(ge=0, lt=2**63)],
) -> dict[str, Any]:
    try:
        proof = await run_in_threadpool(gw.audit.consistency_proof, first, second)
    except (LookupError, ValueError) as exc:
        raise BadInput(str(exc)) from None
    return proof.as_dict()
