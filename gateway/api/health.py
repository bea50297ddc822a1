"""Why: load balancers and orchestrators need liveness, readiness (models loaded, database
reachable, a policy active — a refused reload stays ready with `last_error`) and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from gateway.db import ping

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    gw = getattr(request.app.state, "gateway", None)
    body: dict[str, Any] = {"ready": False}
    if gw is None or not gw.started:
        body["reason"] = "starting"
        return JSONResponse(body, status_code=503)
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
    if gw.serve_client is not None:  # the ray model backend: the workers must answer too
        problems = gw.serve_client.problems(gw.settings.ray_families)
        body["model_backend"] = {"backend": "ray", "address": gw.serve_client.url,
                                 "families": list(gw.settings.ray_families), "problems": problems}
        ready = ready and not problems
    body["ready"] = ready
    gw.metrics.ready.set(1 if ready else 0)
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"}})
def metrics(request: Request) -> Response:
    gw = getattr(request.app.state, "gateway", None)
    if gw is None:
        return Response(b"", media_type="text/plain")
    return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4")
