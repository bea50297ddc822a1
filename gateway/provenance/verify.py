"""Why: verify joins three sources — the C2PA manifest, the watermark table and the audit log —
and the registry's current grant states, then cuts the answer to what the caller may see. Its
inputs are narrow: the provenance service, a way to find a decision's audit entry, and (when a
registry is attached) the grant states. Hash distances are the operator's only (issue #15.6)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from gateway.apikeys import Principal
from gateway.audit import AuditLog
from gateway.audit.reader import AuditEntry, AuditQuery
from gateway.provenance.service import ProvenanceService

__all__ = ["CALLER_HIDDEN", "GrantStates", "verify_file"]

# watermark fields only operator keys see: hash distances (the PDQ distance of the copy to the release)
CALLER_HIDDEN = frozenset({"pdq_distance"})


class GrantStates(Protocol):
    """(grant id, erased | revoked | expired | granted) per id, read now (the consent registry)."""

    def grant_states(self, grant_ids: Sequence[str], now: datetime) -> list[tuple[str, str]]: ...


def _find_decision(audit: AuditLog, decision_id: str) -> AuditEntry | None:
    """The audit entry of a decision (the log indexes decision ids as a query column)."""
    entries, _ = audit.query(**AuditQuery(decision_id=decision_id, limit=1).as_kwargs())
    return entries[0] if entries else None


def verify_file(
    provenance: ProvenanceService,
    audit: AuditLog,
    grants: GrantStates | None,
    clock: Callable[[], datetime],
    *,
    operator_tenant: str,
    principal: Principal,
    data: bytes,
    mime: str,
    rgb: np.ndarray | None,
) -> dict[str, Any]:
    def release_size(decision_id: str) -> tuple[int, int] | None:
        entry = _find_decision(audit, decision_id)
        media = entry.record.get("media") if entry is not None else None
        if not media or not isinstance(media, list):
            return None
        first = media[0]
        if not isinstance(first, dict) or not first.get("width") or not first.get("height"):
            return None
        return int(first["width"]), int(first["height"])

    found = provenance.inspect(data, mime, rgb, release_size)
    is_operator = principal.is_operator(operator_tenant)
    decisions = []
    for decision_id in found["decision_ids"]:
        entry = _find_decision(audit, decision_id)
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
                grant_ids = list(record.get("grant_ids", []))
                states = grants.grant_states(grant_ids, clock()) if grants is not None and grant_ids else []
                item["grants"] = [{"grant_id": gid, "state": state} for gid, state in states]
                try:
                    item["inclusion_proof"] = audit.inclusion_proof(entry.index).as_dict()
                except Exception as exc:  # noqa: BLE001 - pending checkpoint
                    item["inclusion_proof"] = {"pending": True, "detail": str(exc)}
        decisions.append(item)
    mark = found["watermark"]
    if not is_operator and isinstance(mark, dict):
        # no hash distance outside the operator (issue #15.6): a number would let a client tune a copy
        # until it passes for the release; `image_matches_release` says what the distance decided
        mark = {k: v for k, v in mark.items() if k not in CALLER_HIDDEN}
    return {"type": mime, "c2pa": found["c2pa"], "watermark": mark, "decisions": decisions}
