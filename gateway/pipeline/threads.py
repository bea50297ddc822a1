"""Why: blocking work (decoding, provenance, the audit append) runs off the event loop in the same
worker-thread pool the web framework uses (anyio's, 40 threads by default) — not asyncio's small
default executor, which the model calls of the check stage already keep busy. The pipeline imports
no web framework, so it calls anyio directly."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio.to_thread

__all__ = ["in_thread"]

P = ParamSpec("P")
T = TypeVar("T")


async def in_thread(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in a worker thread (as starlette's `run_in_threadpool`)."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
