"""Why: one API key must not be able to flood the upstream models (they cost money and GPU
time) nor the gateway's own checks. A token bucket per key: in memory per replica, or shared by
all replicas through Redis when `settings.redis_url` is set (one Lua script, so the read-modify-
write is atomic and Redis's own clock is the only clock). If Redis is unreachable the replica
falls back to its own bucket rather than refusing everyone — rate limits protect capacity, they
are not a safety check. Rates are passed per call because they live in the hot-reloaded
routes file."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("consentgate.ratelimit")


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: float = 0.0

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))


class RateLimiter(Protocol):
    async def hit(self, key: str, rate_per_s: float, burst: int) -> Verdict: ...

    async def aclose(self) -> None: ...


class MemoryRateLimiter:
    """Token buckets in this process. `clock` is injectable so tests need no sleeping."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, rate_per_s: float, burst: int) -> Verdict:
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + max(0.0, now - last) * rate_per_s)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                verdict = Verdict(True)
            else:
                self._buckets[key] = (tokens, now)
                verdict = Verdict(False, (1.0 - tokens) / rate_per_s)
            if len(self._buckets) > self.max_keys:
                self._prune(now, rate_per_s, burst)
        return verdict

    def _prune(self, now: float, rate_per_s: float, burst: int) -> None:
        full_after = burst / rate_per_s
        for key, (_, last) in list(self._buckets.items()):
            if now - last >= full_after:
                del self._buckets[key]

    async def hit(self, key: str, rate_per_s: float, burst: int) -> Verdict:
        return self.take(key, rate_per_s, burst)

    async def aclose(self) -> None:
        return None


# KEYS[1] bucket; ARGV rate, burst. Returns {allowed, retry_after_seconds_as_string}.
BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


class RedisRateLimiter:
    """Buckets shared by every replica that points at the same Redis and prefix."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "consentgate:ratelimit:",
        fallback: MemoryRateLimiter | None = None,
        client: Any = None,
    ):
        import redis.asyncio as aioredis

        self.client = (
            client
            if client is not None
            else aioredis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        )
        self.prefix = prefix
        self.fallback = fallback or MemoryRateLimiter()
        self._script = self.client.register_script(BUCKET_SCRIPT)
        self._warned = False

    async def hit(self, key: str, rate_per_s: float, burst: int) -> Verdict:
        try:
            allowed, wait = await self._script(keys=[self.prefix + key], args=[repr(rate_per_s), burst])
        except Exception as exc:  # noqa: BLE001 - Redis down: keep limiting, per replica
            if not self._warned:
                log.warning("Redis rate limiter unavailable (%s); limiting per replica", type(exc).__name__)
                self._warned = True
            return self.fallback.take(key, rate_per_s, burst)
        self._warned = False
        wait_s = float(wait.decode() if isinstance(wait, bytes) else wait)
        return Verdict(bool(int(allowed)), wait_s)

    async def aclose(self) -> None:
        await self.client.aclose()


def make_rate_limiter(redis_url: str | None) -> RateLimiter:
    if redis_url:
        return RedisRateLimiter(redis_url)
    return MemoryRateLimiter()
