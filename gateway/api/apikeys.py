"""Why: admins manage API keys over HTTP as well as the CLI; a key's secret is shown once. A key
may be bound to the uses it may request (`uses`; left out: every use), set at creation or later
with `PATCH /v1/apikeys/{id}`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway.api.deps import Admin, GatewayDep

router = APIRouter(prefix="/v1/apikeys", tags=["apikeys"])


class ApiKeyCreate(BaseModel):
    tenant: str = Field(min_length=1, max_length=128)
    role: str
    name: str = Field(default="", max_length=200)
    uses: list[str] | None = Field(default=None, max_length=64,
                                   description="uses the key may request (another use: 403 use_not_allowed); "
                                               "left out: every use")


class ApiKeyUpdate(BaseModel):
    uses: list[str] | None = Field(max_length=64, description="the uses the key may request; null: every use")


@router.post("", status_code=201)
async def create_key(body: ApiKeyCreate, gw: GatewayDep, _: Admin) -> dict[str, Any]:
    info, key = await run_in_threadpool(gw.apikeys.create, body.tenant, body.role, body.name, body.uses)
    return {**asdict(info), "key": key}


@router.patch("/{key_id}")
async def restrict_key(key_id: str, body: ApiKeyUpdate, gw: GatewayDep, _: Admin) -> dict[str, Any]:
    info = await run_in_threadpool(gw.apikeys.restrict, key_id, body.uses)
    return asdict(info)


@router.get("")
async def list_keys(gw: GatewayDep, _: Admin) -> dict[str, Any]:
    keys = await run_in_threadpool(gw.apikeys.list)
    return {"keys": [asdict(k) for k in keys]}


@router.delete("/{key_id}")
async def revoke_key(key_id: str, gw: GatewayDep, _: Admin) -> dict[str, Any]:
    info = await run_in_threadpool(gw.apikeys.revoke, key_id)
    return asdict(info)
