"""Why: authentication and role checks are FastAPI dependencies (typed with `Annotated`), so a
route states who may call it in its signature and cannot forget to check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from gateway.apikeys import Principal, require_role
from gateway.context import Gateway
from gateway.errors import Forbidden, NotReady, Unauthorized
from gateway.sessions import ConsoleSession, session_token, store_for
from gateway.upstream.state import rate_limited


def get_gateway(request: Request) -> Gateway:
    gw: Gateway | None = getattr(request.app.state, "gateway", None)
    if gw is None or not gw.started:
        raise NotReady("the gateway is starting")
    return gw


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def console_session(request: Request, gw: Gateway) -> ConsoleSession | None:
    """The web console's session when the request carries no Authorization header but a session cookie
    (gateway/sessions.py); anything but a read must echo the session's CSRF token. A header always wins."""
    if request.headers.get("authorization"):
        return None
    token = session_token(request.cookies)
    if token is None:
        return None
    session = store_for(gw.engine, gw.settings).resolve(token)
    if request.method not in SAFE_METHODS:
        session.check_csrf(request.headers.get("x-csrf-token"))
    return session


def get_principal(request: Request, gw: GatewayDep) -> Principal:
    session = console_session(request, gw)
    if session is not None:
        if session.is_subject:
            raise Forbidden("a subject's session opens only their own pages", code="subject_session")
        request.state.principal = session.principal
        return session.principal
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


async def limited_generator(gw: GatewayDep, principal: Generator) -> Principal:
    """A generator key within its request rate (per key; shared across replicas through Redis
    when configured). Over the rate: 429 with Retry-After."""
    settings = gw.settings
    if settings.rate_limit_per_s > 0:
        verdict = await gw.proxy.limiter.hit(
            f"api:{principal.key_id}", settings.rate_limit_per_s, settings.rate_limit_burst)
        if not verdict.allowed:
            raise rate_limited(
                f"rate limit for this API key ({settings.rate_limit_per_s:g}/s, burst {settings.rate_limit_burst})",
                "rate_limited", verdict.retry_after_header)
    return principal


LimitedGenerator = Annotated[Principal, Depends(limited_generator)]
Registrar = Annotated[Principal, Depends(role("registrar"))]
Auditor = Annotated[Principal, Depends(role("auditor"))]
Admin = Annotated[Principal, Depends(role("admin"))]
AnyKey = PrincipalDep
