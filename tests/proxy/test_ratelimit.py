"""Token buckets: in memory (a fake clock, no sleeping) and in Redis, where two limiter objects
stand for two replicas sharing one bucket; Redis down falls back to the replica's own bucket."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from examples.upstream import free_port
from gateway.ratelimit import MemoryRateLimiter, RedisRateLimiter, make_rate_limiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_memory_bucket_burst_refill_and_retry_after() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock)
    assert [limiter.take("k", 2.0, 3).allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.take("k", 2.0, 3)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(0.5)
    assert refused.retry_after_header == "1"
    clock.now += 0.5
    assert limiter.take("k", 2.0, 3).allowed and not limiter.take("k", 2.0, 3).allowed
    clock.now += 100
    assert [limiter.take("k", 2.0, 3).allowed for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]  # capped at burst
    assert limiter.take("other", 2.0, 3).allowed  # per key


def test_memory_bucket_prunes_idle_keys() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock=clock, max_keys=10)
    for i in range(10):
        limiter.take(f"k{i}", 1.0, 1)
    clock.now += 5
    limiter.take("new", 1.0, 1)
    assert len(limiter._buckets) == 1


def test_make_rate_limiter_picks_backend() -> None:
    assert isinstance(make_rate_limiter(None), MemoryRateLimiter)
    assert isinstance(make_rate_limiter("redis://127.0.0.1:1/0"), RedisRateLimiter)


def test_redis_bucket_is_shared_by_replicas(redis_url: str) -> None:
    prefix = f"cg-test-{secrets.token_hex(4)}:"

    async def go() -> list[tuple[bool, float]]:
        a, b = RedisRateLimiter(redis_url, prefix=prefix), RedisRateLimiter(redis_url, prefix=prefix)
        try:
            out = []
            for limiter in (a, a, b, b):
                v = await limiter.hit("key:1", 0.01, 3)
                out.append((v.allowed, v.retry_after_s))
            other = await b.hit("key:2", 0.01, 3)
            out.append((other.allowed, other.retry_after_s))
            ttl = await a.client.pttl(prefix + "key:1")
            out.append((ttl > 0, float(ttl)))
            await a.client.delete(prefix + "key:1", prefix + "key:2")
            assert a.fallback._buckets == {} and b.fallback._buckets == {}
            return out
        finally:
            await a.aclose()
            await b.aclose()

    out = asyncio.run(go())
    assert [allowed for allowed, _ in out[:5]] == [True, True, True, False, True]
    assert 90 <= out[3][1] <= 100  # 0.01 tokens/s: ~100 s to the next one
    assert out[5][0]  # the bucket expires by itself


def test_redis_down_falls_back_to_memory() -> None:
    async def go() -> list[bool]:
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0")
        try:
            return [(await limiter.hit("k", 0.01, 2)).allowed for _ in range(3)]
        finally:
            await limiter.aclose()

    assert asyncio.run(go()) == [True, True, False]
