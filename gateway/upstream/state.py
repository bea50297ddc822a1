"""Why: proxy mode keeps per-gateway state — the routes manager, the blob store, the rate
limiter, per-route concurrency slots and one pooled HTTP client for the upstreams. The composition
root builds one `ProxyState` per gateway (`open_proxy_state`; never a module global), hangs it on
`Gateway.proxy` and closes it with the gateway."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy.engine import Engine

from gateway.blobs import BlobStore, DbBlobStore, DirBlobStore, UrlSigner
from gateway.errors import RateLimited
from gateway.ratelimit import RateLimiter, make_rate_limiter
from gateway.settings import Settings
from gateway.upstream.manager import RouteManager
from gateway.upstream.routes import Route

__all__ = ["ProxyMetrics", "ProxyState", "RouteSlots", "open_proxy_state", "rate_limited"]

log = logging.getLogger("consentgate.proxy")


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.upstream = Counter(
            "consentgate_upstream_requests_total",
            "Upstream calls by route and outcome",
            ["route", "outcome"],
            registry=registry,
        )
        self.upstream_seconds = Histogram(
            "consentgate_upstream_seconds",
            "Upstream call latency",
            ["route"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=registry,
        )
        self.rejected = Counter(
            "consentgate_proxy_rejected_total",
            "Proxy requests refused before any check",
            ["reason"],
            registry=registry,
        )


def rate_limited(message: str, code: str, retry_after: str) -> RateLimited:
    return RateLimited(message, code=code, headers={"Retry-After": retry_after})


class RouteSlots:
    """A semaphore per route (per replica): at most `max_concurrency` requests in flight; the
    next waits up to `queue_timeout_s`, then gets 429 `route_busy` with Retry-After."""

    def __init__(self) -> None:
        self._sems: dict[str, tuple[int, asyncio.Semaphore]] = {}

    @asynccontextmanager
    async def hold(self, name: str, route: Route) -> AsyncIterator[None]:
        entry = self._sems.get(name)
        if entry is None or entry[0] != route.max_concurrency:
            entry = (route.max_concurrency, asyncio.Semaphore(route.max_concurrency))
            self._sems[name] = entry
        sem = entry[1]
        try:
            if route.queue_timeout_s > 0:
                await asyncio.wait_for(sem.acquire(), timeout=route.queue_timeout_s)
            elif sem.locked():
                raise TimeoutError
            else:
                await sem.acquire()
        except TimeoutError:
            raise rate_limited(
                f"route {name!r} is at its concurrency limit ({route.max_concurrency}); retry later",
                "route_busy",
                "1",
            ) from None
        try:
            yield
        finally:
            sem.release()


@dataclass
class ProxyState:
    routes: RouteManager
    blobs: BlobStore
    signer: UrlSigner
    limiter: RateLimiter
    metrics: ProxyMetrics
    blob_ttl_s: float = 3600.0
    max_response_bytes: int = 200 * 1024 * 1024
    slots: RouteSlots = field(default_factory=RouteSlots)
    transport: httpx.AsyncBaseTransport | None = None
    _http: httpx.AsyncClient | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _purged_at: float = 0.0

    def http(self) -> httpx.AsyncClient:
        """One pooled client per event loop (the app's), created on first use."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            self._http = httpx.AsyncClient(
                transport=self.transport,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            )
            self._loop = loop
        return self._http

    async def check_rate(self, key_id: str) -> None:
        per_key = self.routes.current().spec.limits.per_key
        if per_key is None:
            return
        verdict = await self.limiter.hit(f"key:{key_id}", per_key.rate_per_s, per_key.burst)
        if not verdict.allowed:
            self.metrics.rejected.labels("rate_limited").inc()
            raise rate_limited(
                f"rate limit for this API key ({per_key.rate_per_s:g}/s, burst {per_key.burst}); "
                f"retry in {verdict.retry_after_header} s",
                "rate_limited",
                verdict.retry_after_header,
            )

    def maybe_purge(self) -> None:
        now = time.monotonic()
        if now - self._purged_at < 60:
            return
        self._purged_at = now
        try:
            removed = self.blobs.purge_expired()
            if removed:
                log.info("purged %d expired blobs", removed)
        except Exception:  # noqa: BLE001 - purging is housekeeping; never fail a request for it
            log.exception("blob purge failed")

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        await self.limiter.aclose()

    def close(self) -> None:
        """Sync closer for `gw.close()` (which runs off the event loop): close on the app's loop."""
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            self._http = None
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(self.aclose())
            return
        try:
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout=5)
        except Exception:  # noqa: BLE001 - closing is best effort at shutdown
            log.warning("proxy clients did not close cleanly", exc_info=True)


def _blob_store(settings: Settings, engine: Engine) -> BlobStore:
    kind = settings.extra.get("blob_store") or (
        "dir" if settings.resolved_database_url.startswith("sqlite") else "db"
    )
    if kind == "db":
        return DbBlobStore(engine)
    if kind == "dir":
        return DirBlobStore(settings.data_dir / "blobs")
    raise ValueError(f"unknown blob_store {kind!r} (dir or db)")


def open_proxy_state(settings: Settings, engine: Engine, registry: CollectorRegistry, *,
                     transport: httpx.AsyncBaseTransport | None = None) -> ProxyState:
    """The proxy resources of one gateway (routes file, blob store, URL signer, rate limiter)."""
    routes_file = Path(settings.extra.get("routes_file") or settings.policies_dir / "routes.yaml")
    return ProxyState(
        routes=RouteManager(routes_file, interval_s=settings.policy_reload_interval_s),
        blobs=_blob_store(settings, engine),
        signer=UrlSigner.from_file(settings.keys_dir / "blob_url.key"),
        limiter=make_rate_limiter(settings.redis_url),
        metrics=ProxyMetrics(registry),
        blob_ttl_s=float(settings.extra.get("blob_ttl_s", 3600)),
        max_response_bytes=settings.max_upload_bytes * 4,
        transport=transport,
    )
