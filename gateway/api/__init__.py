"""The HTTP layer: thin routers (parse, call the pipeline or a part, map the answer), one module per
route group, registered explicitly here in the order the OpenAPI document lists them.

    deps.py       auth and role dependencies (`GatewayDep`, `Generator`, `Admin`, ...)
    forms.py      the multipart `request` + `media` shape, capped reads
    errors.py     every package's errors → status and JSON body (the one mapping)
    denials.py    the 403 shape of a deny or review
    surface.py    the proxy surfaces' request shapes and OpenAI-style errors
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter

__all__ = ["routers"]


def routers() -> list[APIRouter]:
    # imported here, not at the top: `gateway.api.uses` (shared with `consentgate registry uses`) must be
    # importable without FastAPI and every router (the CLI's start-up, #22.6)
    from gateway.api import (
        apikeys,
        audit,
        check,
        health,
        jobs,
        policy,
        provenance,
        proxy,
        registry,
        registry_subject,
        release,
    )

    return [health.router, check.router, apikeys.router, release.router, provenance.router, registry.router,
            registry_subject.router, audit.router, policy.router, proxy.router, jobs.router]
