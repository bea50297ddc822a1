"""Why: every releasing surface refuses a deny or review the same way — 403 with the decision id
and the record in the caller's view — so clients handle one shape."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


def denial_response(record: dict[str, Any]) -> JSONResponse:
    decision = record["decision"]
    code = "policy_denied" if decision == "deny" else "review_required"
    first = next((r for r in record.get("reasons", []) if r.get("outcome") in ("deny", "review")), None)
    message = f"{decision}: {first['rule']}: {first['detail']}" if first else f"the policy says {decision}"
    return JSONResponse(
        {"error": {"code": code, "message": message, "decision_id": record["decision_id"]}, "decision": record},
        status_code=403,
        headers={"X-Decision-Id": record["decision_id"], "X-Decision": decision},
    )
