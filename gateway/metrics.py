"""Why: operators need to see where time goes (per pipeline stage and per model) and what the
gateway answers (requests by route and status). One registry per app — no process globals.

Every label value comes from a bounded set: a Prometheus child per label combination lives as long
as the process, so a label taken verbatim from a request (a `use` the policy does not name, an
invented HTTP method) would let callers grow the registry without bound (#21.4). Such values are
counted under `other`."""

from __future__ import annotations

from collections.abc import Container

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

OTHER = "other"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("consentgate_requests_total", "HTTP requests", ["route", "method", "status"],
                                registry=self.registry)
        self.request_seconds = Histogram("consentgate_request_seconds", "HTTP request latency", ["route"],
                                         buckets=_BUCKETS, registry=self.registry)
        self.stage_seconds = Histogram("consentgate_stage_seconds", "Pipeline stage latency", ["stage"],
                                       buckets=_BUCKETS, registry=self.registry)
        self.model_seconds = Histogram("consentgate_model_seconds", "Model call latency", ["model"],
                                       buckets=_BUCKETS, registry=self.registry)
        self.decisions = Counter("consentgate_decisions_total", "Decisions", ["stage", "use", "decision"],
                                 registry=self.registry)
        self.model_failures = Counter("consentgate_model_failures_total", "Model failures (fail-closed)",
                                      ["model"], registry=self.registry)
        self.policy_reloads = Counter("consentgate_policy_reloads_total", "Policy reload attempts", ["result"],
                                      registry=self.registry)
        self.ready = Gauge("consentgate_ready", "1 when the gateway is ready", registry=self.registry)
        # The ray model backend (classifiers.rayserve): each call to a family's Serve deployment,
        # by outcome (ok, retried, model_error, failed) — the saturation signal of the model workers.
        self.ray_round_trip_seconds = Histogram(
            "consentgate_ray_round_trip_seconds", "Round trip of a model call to Ray Serve",
            ["family", "op", "outcome"], buckets=_BUCKETS, registry=self.registry)

    def count_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered HTTP request; `route` is the matched route's template (or "unmatched")."""
        self.requests.labels(route, method if method in HTTP_METHODS else OTHER, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def count_decision(self, stage: str, use: str, decision: str, known_uses: Container[str]) -> None:
        """One decision; a `use` the active policy does not name is counted under `other`."""
        self.decisions.labels(stage, use if use in known_uses else OTHER, decision).inc()

    def observe_ray_call(self, family: str, op: str, seconds: float, outcome: str) -> None:
        """`classifiers.rayserve.ServeClient`'s observer."""
        self.ray_round_trip_seconds.labels(family, op, outcome).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
