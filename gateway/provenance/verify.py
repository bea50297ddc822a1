"""Why: verify joins three sources — the C2PA manifest, the watermark table and the audit log —
and the registry's current grant states, then cuts the answer to what the caller may see."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from gateway.apikeys import Principal
from gateway.media import DecodedImage


def _grant_states(gw: Any, grant_ids: list[str]) -> list[dict[str, Any]]:
    if not grant_ids or gw.registry is None:
        return []
    from gateway.context import utc_now
    from gateway.registry.models import RegistryGrant

    now = utc_now()
    with Session(gw.engine) as session:
        rows = {r.id: r for r in session.exec(select(RegistryGrant).where(col(RegistryGrant.id).in_(grant_ids)))}
    out = []
    for gid in grant_ids:
        row = rows.get(gid)
        if row is None:
            state = "erased"
        elif row.revoked_at is not None:
            state = "revoked"
        elif row.expires_at is not None and _utc(row.expires_at) <= now:
            state = "expired"
        else:
            state = "granted"
        out.append({"grant_id": gid, "state": state})
    return out


def _utc(ts: Any) -> Any:
    from datetime import UTC

    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _find_decision(gw: Any, decision_id: str) -> Any:
    """The audit entry of a decision (the log indexes decision ids as a query column)."""
    entries, _ = gw.audit.query(decision_id=decision_id, limit=1)
    return entries[0] if entries else None


def verify_file(gw: Any, principal: Principal, data: bytes, mime: str, image: DecodedImage | None) -> dict[str, Any]:
    rgb = image.rgb if image is not None else None
    found = gw.provenance.inspect(data, mime, rgb)
    is_operator = principal.is_operator(gw.settings.operator_tenant)
    decisions = []
    for decision_id in found["decision_ids"]:
        entry = _find_decision(gw, decision_id)
        item: dict[str, Any] = {"decision_id": decision_id}
        if entry is not None:
            record = entry.record
            visible = is_operator or record.get("tenant") == principal.tenant
            item.update({
                "decision": record.get("decision"), "use": record.get("use"), "created_at": record.get("created_at"),
                "policy": record.get("policy"), "audit_index": entry.index,
            })
            if visible:
                item["tenant"] = record.get("tenant")
                item["grants"] = _grant_states(gw, list(record.get("grant_ids", [])))
                try:
                    proof = gw.audit.inclusion_proof(entry.index)
                    item["inclusion_proof"] = proof.as_dict() if hasattr(proof, "as_dict") else proof.__dict__
                except Exception as exc:  # noqa: BLE001 - pending checkpoint
                    item["inclusion_proof"] = {"pending": True, "detail": str(exc)}
        decisions.append(item)
    return {"type": mime, "c2pa": found["c2pa"], "watermark": found["watermark"], "decisions": decisions}
