"""Why: serve the console's files with a strict Content-Security-Policy (no inline script, nothing
from another origin) and exchange an API key for a session cookie (HttpOnly, SameSite=Strict,
Secure behind TLS) — the only routes the console adds to the gateway. Every URL the console uses is
relative, so it works behind the same reverse proxy (and path prefix) as the API."""

from __future__ import annotations

import hashlib
import mimetypes
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.context import Gateway
from gateway.errors import BadInput, Forbidden, NotFound, NotReady, Unauthorized, UnsupportedMedia
from gateway.sessions import (
    COOKIE_PLAIN,
    COOKIE_SECURE,
    ConsoleSession,
    session_token,
    store_for,
    subject_principal,
)

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).parent / "static"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}


def _files() -> dict[str, Path]:
    """The files the console may serve, fixed at start (no path from a request touches the disk)."""
    return {p.relative_to(STATIC).as_posix(): p for p in STATIC.rglob("*")
            if p.is_file() and p.suffix in _TYPES and not p.name.startswith(".")}


FILES = _files()


def _secure(response: Response, *, cache: bool = False) -> Response:
    response.headers.update(SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-cache" if cache else "no-store"
    return response


def _gateway(request: Request) -> Gateway:
    gw: Gateway | None = getattr(request.app.state, "gateway", None)
    if gw is None or not gw.started:
        raise NotReady("the gateway is starting")
    return gw


def _behind_tls(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def _same_origin(request: Request) -> None:
    """Refuse a cross-site sign-in or sign-out (login CSRF): a browser always sends Origin on a
    POST/DELETE from a page; it must name this host."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    # Hostnames, not ports: a reverse proxy's `Host: $host` drops the port the browser's Origin carries.
    host = urlsplit("//" + request.headers.get("host", "")).hostname
    if origin == "null" or urlsplit(origin).hostname != host:
        raise Forbidden("sign-in from another site is refused", code="cross_origin")


def _session_json(session: ConsoleSession, gw: Gateway) -> dict[str, Any]:
    return {"role": session.role, "tenant": session.tenant, "subject_id": session.subject_id,
            "operator": session.tenant == gw.settings.operator_tenant,
            "csrf_token": session.csrf, "expires_at": session.expires_at.isoformat(),
            "idle_expires_at": session.idle_expires_at.isoformat()}


@router.get("/")
async def root() -> Response:
    return RedirectResponse("console", status_code=307)


@router.get("/console")
async def index() -> Response:
    return _secure(FileResponse(STATIC / "index.html", media_type="text/html"), cache=True)


@router.get("/console/")
async def index_slash() -> Response:
    return RedirectResponse("../console", status_code=307)


@router.get("/console/static/{name:path}")
async def static(name: str) -> Response:
    path = FILES.get(name)
    if path is None:
        raise NotFound(f"no console file {name!r}")
    media_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return _secure(FileResponse(path, media_type=media_type), cache=True)


@router.post("/console/session")
async def sign_in(request: Request) -> Response:
    """Exchange an API key (auditor, registrar, admin) or a subject access token for a session cookie.
    JSON only: a form on another site cannot send it."""
    _same_origin(request)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMedia("sign in with a JSON body: {\"api_key\": \"...\"}")
    try:
        body = await request.json()
    except ValueError:
        raise BadInput("the body is not JSON") from None
    body = body if isinstance(body, dict) else {}
    key, subject_token = body.get("api_key"), body.get("subject_token")
    given = key if key is not None else subject_token
    if not isinstance(given, str) or not given.strip() or len(given) > 512 or (key is not None
                                                                                and subject_token is not None):
        raise BadInput("give your API key as {\"api_key\": \"...\"} or your access token as "
                       "{\"subject_token\": \"cgs_...\"}")
    gw = _gateway(request)
    store = store_for(gw.engine, gw.settings)
    if subject_token is not None:
        if gw.registry is None:
            raise NotReady("no consent registry is configured", code="registry_unavailable")
        subject_id, token_id = await run_in_threadpool(gw.registry.authenticate_access_token, given.strip())
        token, session = await run_in_threadpool(
            lambda: store.create(subject_principal(token_id), subject_id=subject_id))
    else:
        principal = await run_in_threadpool(gw.apikeys.authenticate, given.strip())
        token, session = await run_in_threadpool(store.create, principal)
    response = _secure(JSONResponse(_session_json(session, gw)))
    secure = _behind_tls(request)
    response.set_cookie(COOKIE_SECURE if secure else COOKIE_PLAIN, token, httponly=True, samesite="strict",
                        secure=secure, path="/", max_age=int(gw.settings.console_session_max_s))
    return response


@router.get("/console/session")
async def who_am_i(request: Request) -> Response:
    token = session_token(request.cookies)
    if token is None:
        raise Unauthorized("not signed in", code="not_signed_in")
    gw = _gateway(request)
    session = await run_in_threadpool(store_for(gw.engine, gw.settings).resolve, token)
    return _secure(JSONResponse(_session_json(session, gw)))


@router.delete("/console/session")
async def sign_out(request: Request) -> Response:
    _same_origin(request)
    token = session_token(request.cookies)
    response = _secure(JSONResponse({"signed_out": True}))
    if token is not None:
        gw = _gateway(request)
        store = store_for(gw.engine, gw.settings)
        try:
            session = await run_in_threadpool(store.resolve, token)
        except Unauthorized:
            session = None
        if session is not None:
            session.check_csrf(request.headers.get("x-csrf-token"))
            await run_in_threadpool(store.delete, token)
    for name, secure in ((COOKIE_SECURE, True), (COOKIE_PLAIN, False)):
        response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="strict")
    return response


NOTICE_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _notices(directory: Path) -> list[dict[str, str]]:
    out = []
    for path in sorted(directory.glob("*.md")) if directory.is_dir() else []:
        if not NOTICE_VERSION.match(path.stem):
            continue
        raw = path.read_bytes()
        first, _, rest = raw.decode("utf-8", errors="replace").partition("\n")
        out.append({"version": path.stem, "title": first.lstrip("# ").strip() or path.stem, "text": rest.strip(),
                    "sha256": hashlib.sha256(raw).hexdigest()})
    return out


@router.get("/console/notices")
async def notices(request: Request) -> Response:
    """The notices a person is shown before their face or voice is enrolled (`policies/notices/<version>.md`,
    first line the title); the enrolment records the version they accepted. Public: anyone may read
    what they would be agreeing to."""
    gw = _gateway(request)
    found = await run_in_threadpool(_notices, gw.settings.policies_dir / "notices")
    return _secure(JSONResponse({"notices": found}))


@router.get("/console/vkey")
async def vkey(request: Request) -> Response:
    """The audit log's verifier key, for the in-browser Verify (an auditor should compare it with the
    key they were given out of band; the console lets them pin their own)."""
    gw = _gateway(request)
    return _secure(JSONResponse({"vkey": gw.audit.signer.vkey, "origin": gw.audit.origin}))
