"""Why: admins see which policy is live (name, digest, loaded_at) and why the last reload was
refused, and can trigger a reload without SIGHUP."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import Admin, GatewayDep

router = APIRouter(prefix="/v1/policy", tags=["policy"])


@router.get("")
async def policy_status(gw: GatewayDep, _: Admin) -> dict[str, Any]:
    return gw.policies.status()


@router.post("/reload")
async def reload(gw: GatewayDep, _: Admin) -> dict[str, Any]:
    ok = await run_in_threadpool(gw.policies.reload)
    return {"reloaded": ok, **gw.policies.status()}
