"""Why: an SRE running the gateway in front of a fleet needs one structured line per request —
which request, which decision, which tenant, what verdict, where the time went — that a log
pipeline can index without parsing prose, and that never carries a secret or (unless the policy
allows it) the prompt.

Each HTTP request gets a `RequestTrace` in a context variable (set by the app's middleware); the
pipeline stages time themselves with `stage("watermark")`, which feeds both the Prometheus
histogram `consentgate_stage_seconds{stage}` and the trace; the pipeline notes the decision on the
trace; the middleware writes the line when the answer leaves:

    {"event": "request", "request_id": "…", "decision_id": "…", "tenant": "acme", "verdict": "deny",
     "route": "/v1/check", "status": 200, "ms": 212.4, "stages_ms": {"decode": 3.1, "models": 180.2, …}}

Context variables follow asyncio tasks and `asyncio.to_thread`, so stages timed in worker threads
land on the right request. Outside a request (`stage` in a job runner) only the histogram is fed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Histogram

LOGGER = logging.getLogger("consentgate.requests")

# What a request line may carry: anything else is dropped (no headers, keys, bodies, prompts).
_FIELDS = ("request_id", "decision_id", "tenant", "verdict", "use", "stage", "route", "method", "status",
           "ms", "stages_ms", "models_ms", "error", "prompt")


@dataclass
class RequestTrace:
    request_id: str
    route: str
    method: str
    started: float = field(default_factory=time.perf_counter)
    tenant: str | None = None
    decision_ids: list[str] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    use: str | None = None
    stage: str | None = None
    prompt: str | None = None  # only set when the active policy says `logging.prompt_text: true`
    stages_ms: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.stages_ms[stage] = round(self.stages_ms.get(stage, 0.0) + seconds * 1000, 2)

    def line(self, status: int, error: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event": "request",
            "request_id": self.request_id,
            "decision_id": self.decision_ids[-1] if len(self.decision_ids) == 1 else (self.decision_ids or None),
            "tenant": self.tenant,
            "verdict": self.verdicts[-1] if self.verdicts else None,
            "use": self.use,
            "stage": self.stage,
            "route": self.route,
            "method": self.method,
            "status": status,
            "ms": round((time.perf_counter() - self.started) * 1000, 2),
            "stages_ms": dict(self.stages_ms),
        }
        if error:
            out["error"] = error
        if self.prompt is not None:
            out["prompt"] = self.prompt
        return {k: v for k, v in out.items() if k == "event" or (k in _FIELDS and v is not None)}


_current: ContextVar[RequestTrace | None] = ContextVar("consentgate_request_trace", default=None)


def begin(trace: RequestTrace) -> object:
    """Make `trace` the current request's; returns the token for `end`."""
    return _current.set(trace)


def end(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


def current() -> RequestTrace | None:
    return _current.get()


def note_decision(*, decision_id: str, tenant: str, verdict: str, use: str, stage: str,
                  prompt: str | None = None) -> None:
    """The pipeline's word on the current request (a proxied request makes two decisions)."""
    trace = _current.get()
    if trace is None:
        return
    trace.decision_ids.append(decision_id)
    trace.verdicts.append(verdict)
    trace.tenant, trace.use, trace.stage = tenant, use, stage
    if prompt is not None:
        trace.prompt = prompt


@contextmanager
def stage(histogram: Histogram, name: str) -> Iterator[None]:
    """Time a pipeline stage into `histogram` (labelled by stage) and the current request's trace."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - start
        histogram.labels(name).observe(seconds)
        trace = _current.get()
        if trace is not None:
            trace.add(name, seconds)


def observe(histogram: Histogram, name: str, seconds: float) -> None:
    """A stage timed elsewhere (e.g. across an await): same effect as `stage`."""
    histogram.labels(name).observe(seconds)
    trace = _current.get()
    if trace is not None:
        trace.add(name, seconds)


def emit(trace: RequestTrace, status: int, error: str | None = None) -> None:
    # A library's logging.config call with disable_existing_loggers (import-linter's, alembic's
    # fileConfig) would silence the request lines for good; they are the operators' record.
    LOGGER.disabled = False
    LOGGER.info("%s", json.dumps(trace.line(status, error), separators=(",", ":"), sort_keys=False))


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: the request lines pass through as they are; other records
    become {"ts", "level", "logger", "message"} (exceptions as "exc")."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == LOGGER.name and message.startswith("{"):
            payload = json.loads(message)
        else:
            payload = {"message": message}
        base = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name}
        base.update(payload)
        if record.exc_info:
            base["exc"] = self.formatException(record.exc_info)
        return json.dumps(base, separators=(",", ":"), default=str)
