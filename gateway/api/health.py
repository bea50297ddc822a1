"""Why: load balancers and orchestrators need liveness, readiness (models loaded, database
reachable, a policy active — a refused reload stays ready with `last_error`) and metrics.

`/readyz` is unauthenticated (probes carry no key), so without a key it says ready or not and
nothing else; tenant names, file paths, rule ids, model versions and `last_error` are shown only to
an `admin` key (issue #15.10)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from gateway.db import ping
from gateway.errors import GatewayError

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _admin(request: Request, gw: Any) -> bool:
    """Whether the request carries a valid admin key (any problem: no, silently — probes stay simple)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    try:
        return bool(gw.apikeys.authenticate(token.strip()).role == "admin")
    except GatewayError:
        return False
    except Exception:  # noqa: BLE001 - an unreadable key store is "not an admin" here
        return False


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    gw = getattr(request.app.state, "gateway", None)
    if gw is None or not gw.started:
        return JSONResponse({"ready": False}, status_code=503)
    body = _readiness(gw)
    status = 200 if body["ready"] else 503
    if not _admin(request, gw):
        return JSONResponse({"ready": body["ready"]}, status_code=status)
    return JSONResponse(body, status_code=status)


def _readiness(gw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ready": False}
    try:
        ping(gw.engine)
        body["database"] = "ok"
    except Exception as exc:  # noqa: BLE001
        body["database"] = f"unreachable: {type(exc).__name__}"
    status = gw.policies.status()
    body["policy"] = status
    body["last_error"] = status["last_error"]
    body["models"] = gw.pool.loaded()
    try:
        routes = gw.proxy.routes.status()
        body["routes"] = {"routes": routes["routes"], "last_error": routes["last_error"]}
    except Exception as exc:  # noqa: BLE001 - routes are optional; report, never fail readiness
        body["routes"] = {"last_error": f"{type(exc).__name__}: {exc}"}
    ready = body["database"] == "ok" and gw.policies.active is not None
    if gw.registry is not None:  # the consent registry fails closed: not ready when it cannot answer (#15.5)
        problem = gw.registry.readiness()
        body["registry"] = problem or "ok"
        ready = ready and problem is None
    if gw.serve_client is not None:  # the ray model backend: the workers must answer too
        problems = gw.serve_client.problems(gw.settings.ray_families)
        body["model_backend"] = {"backend": "ray", "address": gw.serve_client.url,
                                 "families": list(gw.settings.ray_families), "problems": problems}
        ready = ready and not problems
    body["ready"] = ready
    gw.metrics.ready.set(1 if ready else 0)
    return body


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"}})
def metrics(request: Request) -> Response:
    gw = getattr(request.app.state, "gateway", None)
    if gw is None:
        return Response(b"", media_type="text/plain")
    return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4")
