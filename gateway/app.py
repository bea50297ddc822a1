"""Why: `create_app(settings)` is the one way to build a gateway: it wires the routers
(gateway.api), the error mapping (gateway.api.errors: every failure is JSON with the right status,
never a bare 500 for bad input), limits, security headers and metrics, and builds all state in the
lifespan through the composition root (gateway.context) — nothing at import time."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from classifiers.registry import ModelRegistry
from gateway.api import routers
from gateway.api.errors import install_error_handlers
from gateway.console import router as console_router
from gateway.context import Gateway, build_gateway
from gateway.requestlog import RequestTrace, begin, emit, end
from gateway.settings import Settings

log = logging.getLogger("consentgate")

MALLOC_TRIM_S = 30.0  # default of CONSENTGATE_MALLOC_TRIM_S


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (malloc.h, glibc >= 2.33): sizes summed over every arena."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def malloc_stats() -> dict[str, float] | None:
    """glibc's own account of the C heap in MB (None without `mallinfo2`): `in_use` (allocated and not
    freed: live buffers, and every region an allocator inside a library keeps for itself — ONNX
    Runtime's arenas), `free` (freed but still held by glibc's arenas: what `malloc_trim` may return,
    and fragments it cannot), `mmapped` (large blocks mapped one by one, always in use)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    info = fn()
    mb = 1024 * 1024
    return {"in_use": (info.uordblks + info.hblkhd) / mb, "free": info.fordblks / mb, "mmapped": info.hblkhd / mb,
            "heap": info.arena / mb}


def _anon_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return float("nan")


def start_malloc_trimmer(every_s: float, stats_path: str | None = None) -> threading.Event | None:
    """Hand freed C-heap pages back to the OS every `every_s` seconds (issue #21.4). Measured with
    `bench/load.py --trace`: a serving process's RSS rose ~38 MB per 800 mixed requests, yet the
    Python heap held +0.3 MB and `malloc_trim(0)` brought the RSS back to the same level every
    round — glibc kept the freed buffers of images, model outputs and request bodies (per-thread
    arenas of the worker threads) instead of returning them. Not a leak, but the process would look
    like one and hold memory it does not use. Returns the event that stops the thread (None: off).
    With `stats_path` (CONSENTGATE_MALLOC_STATS, a diagnostic for bench/load.py) each trim appends a
    JSON line: the time, the anonymous RSS before and after it and glibc's `malloc_stats` before it."""
    trim = _malloc_trim() if every_s > 0 else None
    if trim is None:
        return None
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            if not stats_path:
                trim(0)
                continue
            before, stats = _anon_mb(), malloc_stats()
            trim(0)
            line = {"t": round(time.time(), 1), "anon_before": round(before, 2), "anon_after": round(_anon_mb(), 2),
                    **{k: round(v, 2) for k, v in (stats or {}).items()}}
            with contextlib.suppress(OSError), open(stats_path, "a") as fh:
                fh.write(json.dumps(line) + "\n")

    threading.Thread(target=loop, name="malloc-trim", daemon=True).start()
    return stop

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def default_arena_max() -> int:
    """One malloc arena per CPU this process may run on, at least 2 (glibc's own default is 8 per core)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 2
    return max(2, cpus)


def limit_malloc_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas at `count` for threads that first allocate from now on (issue #21.4).
    Measured with `bench/load.py` (10k mixed requests, 8 clients, 2 cores): glibc gives each new
    worker thread its own arena up to 8 per core; the serving process held 21 arena heaps, and each
    keeps its high-water mark and its fragments, so the RSS after the warm-up was 784 MB (+22.6 MB
    over the run). With 2 arenas it was 668 MB in three runs (over the run +6.8, +4.8, +18.3 MB: a
    slower rise outside the arenas remains; docs/deploy.md), CPU per request 28.9-35.5 ms against
    28.8 ms on a loaded machine (a cost is not ruled out). An operator's MALLOC_ARENA_MAX in the
    environment wins (glibc read it at start); `count` 0 leaves glibc's default. False where the C
    library has no `mallopt` (musl, macOS) or refused."""
    if count <= 0 or "MALLOC_ARENA_MAX" in os.environ:
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, count))
    except (OSError, AttributeError):
        return False


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
DOCS_CSP = (b"content-security-policy",
            b"default-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fastapi.tiangolo.com data:")


class BodyLimit:
    """Pure ASGI middleware: refuses bodies over the limit (by Content-Length, and by counting
    streamed chunks) with 413 before any parser spools them to disk; adds security headers."""

    def __init__(self, app: ASGIApp, max_body: int):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_docs = scope.get("path", "").startswith(("/docs", "/redoc"))
        started = False
        refused = False

        async def send_secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {h[0].lower() for h in headers}
                for name, value in SECURITY_HEADERS:
                    if name == b"content-security-policy" and is_docs:
                        name, value = DOCS_CSP
                    if name not in names:
                        headers.append((name, value))
                message["headers"] = headers
            await send(message)

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if refused and not started:
                return  # the app answers a body cut off at the limit (FastAPI: 400); ours is 413
            if message["type"] == "http.response.start":
                started = True
            await send_secure(message)

        too_large = f"request body is larger than the limit of {self.max_body} bytes"
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"").lower():
            # NUL never belongs in an id or a filter, and PostgreSQL text cannot hold it.
            await _send_json(send_with_headers, 400, "bad_input", "NUL characters are not allowed in the URL")
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_body
            except ValueError:
                too_big = True
            if too_big:
                await _send_json(send_secure, 413, "too_large", too_large)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    refused = True
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, counting_receive, send_with_headers)
        except Exception:
            # Cut off at the limit: whatever the app made of it (FastAPI's 400, a handler's own error,
            # an exception group from a BaseHTTPMiddleware), the answer is 413.
            if not refused or started:
                raise
        if refused and not started:
            await _send_json(send_secure, 413, "too_large", too_large)


class _BodyTooLarge(Exception):
    pass


async def _send_json(send: Callable[[Message], Awaitable[None]], status: int, code: str, message: str,
                     *, openai: bool = False) -> None:
    import json

    error: dict[str, Any] = {"code": code, "message": message}
    if openai:  # the OpenAI-compatible surface answers OpenAI error objects (gateway/api/surface.py)
        from gateway.api.surface import OPENAI_TYPES

        error = {"message": message, "type": OPENAI_TYPES.get(status, "server_error"), "code": code, "param": None}
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


_UPLOADS = re.compile(r"^/v1/(check|release|jobs|generate/[^/]+|provenance/verify"
                      r"|subjects/[^/]+/(faces|voices|hashes)"
                      r"|images/(generations|edits)|audio/speech)/?$")
# The OpenAI-compatible surface: the same check, refusals as OpenAI error objects.
_OPENAI = re.compile(r"^/v1/(images/(generations|edits)|audio/speech)/?$")


class AuthFirst:
    """Pure ASGI middleware: on the routes that take uploads, the caller is authenticated from the
    headers **before** a byte of the body is read (FastAPI parses a form before it runs the route's
    dependencies), so an unauthenticated 1 GB upload costs a 401 after the headers, not a spooled
    body (issue #15.9). API keys (`cg_…`) are checked here (and again by the route); subject tokens
    and console session cookies go on to the route, which checks them as before. The OpenAI-compatible
    routes (`/v1/images/generations`, `/v1/images/edits`, `/v1/audio/speech`) are covered too, and their
    refusals keep OpenAI's error object shape (`{"error": {message, type, code, param}}`)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not _UPLOADS.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        openai = bool(_OPENAI.match(scope.get("path", "")))
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token.startswith("cg_"):
            gw = getattr(scope.get("app"), "state", None)
            gw = getattr(gw, "gateway", None)
            if gw is not None and gw.started:
                from gateway.errors import GatewayError

                try:
                    await asyncio.to_thread(gw.apikeys.authenticate, token)
                except GatewayError as exc:
                    await _send_json(send, exc.status, exc.code, exc.message, openai=openai)
                    return
        elif not (scheme.lower() == "bearer" and token) and b"cookie" not in headers:
            await _send_json(send, 401, "unauthorized", "missing API key: send `Authorization: Bearer <key>`",
                             openai=openai)
            return
        await self.app(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    models: ModelRegistry | None = None,
    background_start: bool = False,
    serve_start_errors: bool = False,
    on_ready: Callable[[Gateway], None] | None = None,
) -> FastAPI:
    """Build the ASGI app. With `background_start`, the server answers at once (/readyz 503)
    while models load; otherwise startup waits for them (tests, `serve --workers N`). A start that
    fails raises out of the startup, unless `background_start` or `serve_start_errors`: then the
    server stays up and /readyz answers 503 with the error logged (a `serve --workers N` worker that
    exited instead would be restarted by uvicorn and fail again, in a loop)."""
    import os

    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # onnxruntime >= 1.32 reports usage unless told not to

    def start() -> Gateway:
        gw = build_gateway(settings, models=models)
        if not gw.policies.reload() and gw.policies.active is None:
            log.error("no valid policy could be loaded from %s:\n%s", settings.policies_dir, gw.policies.last_error)
        gw.policies.start_watching(settings.policy_reload_interval_s)
        gw.started = True
        if on_ready is not None:
            on_ready(gw)
        return gw

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = None
        app.state.start_error = None
        # before the models load and the worker threads start: their first allocations pick the arenas
        limit_malloc_arenas(int(settings.extra.get("malloc_arena_max", default_arena_max())))
        trimmer = start_malloc_trimmer(float(settings.extra.get("malloc_trim_s", MALLOC_TRIM_S)),
                                       settings.extra.get("malloc_stats"))
        if background_start:
            def run() -> None:
                try:
                    app.state.gateway = start()
                except Exception as exc:  # noqa: BLE001
                    app.state.start_error = f"{type(exc).__name__}: {exc}"
                    log.exception("gateway failed to start")

            thread = threading.Thread(target=run, name="gateway-start", daemon=True)
            thread.start()
        else:
            try:
                app.state.gateway = await asyncio.to_thread(start)
            except Exception as exc:
                if not serve_start_errors:
                    raise
                app.state.start_error = f"{type(exc).__name__}: {exc}"
                log.exception("gateway failed to start; serving /readyz 503")
        try:
            yield
        finally:
            if trimmer is not None:
                trimmer.set()
            gw = app.state.gateway
            if gw is not None:
                await asyncio.to_thread(gw.close)

    app = FastAPI(
        title="consentgate",
        version="0.1.0",
        description="Safety and consent moderation gateway for generative media.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    _install_metrics(app)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"])
    max_body = settings.max_upload_bytes * max(1, min(settings.max_media_parts, 4)) + 1_000_000
    app.add_middleware(AuthFirst)  # inside BodyLimit: its security headers apply to the 401 too
    app.add_middleware(BodyLimit, max_body=max_body)
    for router in routers():
        app.include_router(router)
    app.include_router(console_router)  # /console (and / leads there): the web console
    return app


def _request_id(request: Request) -> str:
    """The caller's X-Request-Id when it is a plain token (kept for correlation), else a new one."""
    given = request.headers.get("x-request-id", "")
    if 0 < len(given) <= 64 and given.replace("-", "").replace("_", "").isalnum():
        return given
    import secrets

    return secrets.token_hex(16)


def _install_metrics(app: FastAPI) -> None:
    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        start = time.perf_counter()
        # One structured line per API request (gateway.requestlog): ids, tenant, verdict, stage times.
        trace = RequestTrace(_request_id(request), request.url.path, request.method)
        token = begin(trace)
        try:
            response = await call_next(request)
        except Exception as exc:
            if request.url.path.startswith("/v1/"):
                emit(trace, 500, type(exc).__name__)
            raise
        finally:
            end(token)
        gw = getattr(request.app.state, "gateway", None)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        if gw is not None:
            gw.metrics.count_request(path, request.method, response.status_code, time.perf_counter() - start)
        given = response.headers.get("x-request-id")
        if given:  # the proxy's own request id (it links the input and output decisions) wins
            trace.request_id = given
        else:
            response.headers["x-request-id"] = trace.request_id
        if request.url.path.startswith("/v1/"):
            trace.route = path
            emit(trace, response.status_code)
        return response
