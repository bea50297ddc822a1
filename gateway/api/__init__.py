"""Thin HTTP routers; the work happens in the pipeline and the subsystems."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    from gateway.api import apikeys, check, health

    found = [health.router, check.router, apikeys.router]
    from gateway.api import audit, policy, provenance, registry, release

    found += [release.router, provenance.router, registry.router, audit.router, policy.router]
    from gateway.api import proxy

    found.append(proxy.router)
    from gateway.api import jobs

    found.append(jobs.router)
    return found
