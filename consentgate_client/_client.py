"""Why: one client for every verb of the HTTP API, in a sync (`ConsentgateClient`) and an async
(`AsyncConsentgateClient`) flavour. Each verb is written once in `_calls` (request + typed answer);
the two classes bind them to their transport, keeping the verbs' signatures for type checkers.
Pass `transport=` (`httpx.MockTransport`, `httpx.ASGITransport`) to test without a network."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Concatenate, ParamSpec, TypeVar

import httpx

from consentgate_client import _calls as calls
from consentgate_client._calls import Call
from consentgate_client._models import Job

__all__ = ["AsyncConsentgateClient", "ConsentgateClient"]

P = ParamSpec("P")
T = TypeVar("T")
USER_AGENT = "consentgate-client/0.1"


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}


def _sync(fn: Callable[P, Call[T]]) -> Callable[Concatenate[ConsentgateClient, P], T]:
    def method(self: ConsentgateClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(fn(*args, **kwargs))

    method.__name__, method.__doc__ = fn.__name__, fn.__doc__
    return method


def _async(fn: Callable[P, Call[T]]) -> Callable[Concatenate[AsyncConsentgateClient, P], Awaitable[T]]:
    async def method(self: AsyncConsentgateClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(fn(*args, **kwargs))

    method.__name__, method.__doc__ = fn.__name__, fn.__doc__
    return method


class ConsentgateClient:
    """Blocking client. Refusals raise `ConsentgateError` (`PolicyDenied` for a deny or review)."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 120.0,
                 transport: httpx.BaseTransport | None = None):
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=_headers(api_key), timeout=timeout,
                                  transport=transport)

    def _run(self, call: Call[T]) -> T:
        return call.read(self._http.request(call.method, call.path, **call.kwargs))

    check = _sync(calls.check)
    release = _sync(calls.release)
    generate = _sync(calls.generate)
    routes = _sync(calls.routes)
    submit_job = _sync(calls.submit_job)
    job = _sync(calls.job)
    job_result = _sync(calls.job_result)
    create_subject = _sync(calls.create_subject)
    subjects = _sync(calls.subjects)
    subject = _sync(calls.subject)
    enroll = _sync(calls.enroll)
    grant = _sync(calls.grant)
    grants = _sync(calls.grants)
    revoke = _sync(calls.revoke)
    erase = _sync(calls.erase)
    subject_uses = _sync(calls.subject_uses)
    grant_uses = _sync(calls.grant_uses)
    issue_access_token = _sync(calls.issue_access_token)
    export_subject = _sync(calls.export_subject)
    request_erasure = _sync(calls.request_erasure)
    receipt = _sync(calls.receipt)
    restrict_key = _sync(calls.restrict_key)
    audit_entries = _sync(calls.audit_entries)
    audit_entry = _sync(calls.audit_entry)
    checkpoint = _sync(calls.checkpoint)
    inclusion_proof = _sync(calls.inclusion_proof)
    consistency_proof = _sync(calls.consistency_proof)
    verify = _sync(calls.verify)
    create_key = _sync(calls.create_key)
    api_keys = _sync(calls.api_keys)
    revoke_key = _sync(calls.revoke_key)

    def wait_job(self, job_id: str, *, poll_s: float = 0.5, timeout_s: float = 600.0) -> Job:
        """Poll until the job is done or failed (or `timeout_s` passes: TimeoutError)."""
        deadline = time.monotonic() + timeout_s
        while not (state := self.job(job_id)).finished:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {state.state} after {timeout_s:g} s")
            time.sleep(poll_s)
        return state

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ConsentgateClient:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncConsentgateClient:
    """The same verbs as `ConsentgateClient`, awaitable."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 120.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=_headers(api_key), timeout=timeout,
                                       transport=transport)

    async def _run(self, call: Call[T]) -> T:
        return call.read(await self._http.request(call.method, call.path, **call.kwargs))

    check = _async(calls.check)
    release = _async(calls.release)
    generate = _async(calls.generate)
    routes = _async(calls.routes)
    submit_job = _async(calls.submit_job)
    job = _async(calls.job)
    job_result = _async(calls.job_result)
    create_subject = _async(calls.create_subject)
    subjects = _async(calls.subjects)
    subject = _async(calls.subject)
    enroll = _async(calls.enroll)
    grant = _async(calls.grant)
    grants = _async(calls.grants)
    revoke = _async(calls.revoke)
    erase = _async(calls.erase)
    subject_uses = _async(calls.subject_uses)
    grant_uses = _async(calls.grant_uses)
    issue_access_token = _async(calls.issue_access_token)
    export_subject = _async(calls.export_subject)
    request_erasure = _async(calls.request_erasure)
    receipt = _async(calls.receipt)
    restrict_key = _async(calls.restrict_key)
    audit_entries = _async(calls.audit_entries)
    audit_entry = _async(calls.audit_entry)
    checkpoint = _async(calls.checkpoint)
    inclusion_proof = _async(calls.inclusion_proof)
    consistency_proof = _async(calls.consistency_proof)
    verify = _async(calls.verify)
    create_key = _async(calls.create_key)
    api_keys = _async(calls.api_keys)
    revoke_key = _async(calls.revoke_key)

    async def wait_job(self, job_id: str, *, poll_s: float = 0.5, timeout_s: float = 600.0) -> Job:
        deadline = time.monotonic() + timeout_s
        while not (state := await self.job(job_id)).finished:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {state.state} after {timeout_s:g} s")
            await asyncio.sleep(poll_s)
        return state

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncConsentgateClient:
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
