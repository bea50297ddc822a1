"""Why: authentication and role checks are FastAPI dependencies (typed with `Annotated`), so a
route states who may call it in its signature and cannot forget to check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from gateway.apikeys import Principal, require_role
from gateway.context import Gateway
from gateway.errors import NotReady, Unauthorized


def get_gateway(request: Request) -> Gateway:
    gw: Gateway | None = getattr(request.app.state, "gateway", None)
    if gw is None or not gw.started:
        raise NotReady("the gateway is starting")
    return gw


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def get_principal(request: Request, gw: GatewayDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    principal = gw.apikeys.authenticate(token.strip())
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def role(*roles: str) -> Callable[[Principal], Principal]:
    def check(principal: PrincipalDep) -> Principal:
        require_role(principal, *roles)
        return principal

    return check


Generator = Annotated[Principal, Depends(role("generator"))]
Registrar = Annotated[Principal, Depends(role("registrar"))]
Auditor = Annotated[Principal, Depends(role("auditor"))]
Admin = Annotated[Principal, Depends(role("admin"))]
AnyKey = PrincipalDep
