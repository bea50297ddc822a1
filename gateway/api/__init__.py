"""Thin HTTP routers; the work happens in the pipeline and the subsystems."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    from gateway.api import apikeys, check, health

    found = [health.router, check.router, apikeys.router]
    from gateway.api import audit, jobs, policy, provenance, proxy, registry, release

    found += [release.router, provenance.router, registry.router, audit.router, policy.router, jobs.router,
              proxy.router]
    return found
