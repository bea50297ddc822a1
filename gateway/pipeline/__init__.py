"""The decision pipeline, as a library (no web framework): decode → check → decide → (redact, mark,
sign) → append, for images, videos and the proxy alike. It takes narrow ports and returns typed
records; the HTTP routers, the CLI and the job runner drive it.

    service.py      Pipeline — the one place that orders a decision (check, release, decide, append)
    ports.py        the ports it takes (PolicySource, ConsentLookup, AuditSink, Releaser, Clock) + config
    fakes.py        a memory implementation of each port, with fault hooks (tests)
    check.py        CheckStage: models and registry lookups → Facts → decide()
    release.py      the image release stage: blur → watermark → sign, typed failures → deny
    video.py        VideoFlow: the video path (one decode pass: sample ∥ mark), small uploads and jobs
    video_facts.py  a video's facts gathered during the pass, and its record
    proxy.py        ProxyService: input decision → upstream call → output decisions → release
    steps.py        the shared steps: pick the policy runtime, decode, append
    record.py       DecisionRecord (typed until `to_dict()`), build_record, caller_view
    request.py      CheckRequest, the question every entry point asks
    errors.py       typed stage errors
"""

from gateway.pipeline.errors import AuditUnavailable, ModelCallFailed, ProxyDenied, UpstreamFailed
from gateway.pipeline.ports import (
    AuditSink,
    Clock,
    ConsentLookup,
    EmptyConsent,
    PipelineConfig,
    PipelinePorts,
    PolicySource,
    Releaser,
)
from gateway.pipeline.record import DecisionRecord, caller_view
from gateway.pipeline.request import CheckRequest
from gateway.pipeline.service import Decision, Pipeline, Release

__all__ = [
    "AuditSink", "AuditUnavailable", "CheckRequest", "Clock", "ConsentLookup", "Decision", "DecisionRecord",
    "EmptyConsent", "ModelCallFailed", "Pipeline", "PipelineConfig", "PipelinePorts", "PolicySource", "ProxyDenied",
    "Release", "Releaser", "UpstreamFailed", "caller_view",
]
