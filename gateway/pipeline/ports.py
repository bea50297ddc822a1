"""Why: the pipeline is a library. It orders the work of a decision but owns none of the state it
touches: everything stateful comes in through these narrow ports — one Protocol each, whose
docstring states the contract — bundled in the frozen `PipelinePorts` that the composition root
(`gateway.context.build_gateway`) fills with the real parts. `gateway.pipeline.fakes` has a memory
implementation of each port with fault hooks, so the pipeline is tested without a database.

    port            real part                                     fake (gateway.pipeline.fakes)
    PolicySource    gateway.policy.manager.PolicyManager          StaticPolicies
    ConsentLookup   gateway.registry.service.Registry             MemoryConsent (EmptyConsent: nobody)
    AuditSink       gateway.audit.AuditLog                        MemoryAudit
    DecisionLookup  gateway.bootstrap.AuditDecisions              MemoryAudit
    Releaser        gateway.provenance.service.ProvenanceService  MemoryReleaser
    Clock           gateway.context.utc_now                       ManualClock
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gateway.audit import AppendResult
from gateway.decision.facts import FaceMatch, GrantFact, SubjectFact
from gateway.media import MediaLimits
from gateway.metrics import Metrics
from gateway.policy.manager import ActivePolicy
from gateway.provenance.c2pa_sign import ReleaseClaim, SignedMedia
from gateway.provenance.service import ReleasedImage

__all__ = ["AuditSink", "Clock", "ConsentLookup", "DecisionLookup", "EmptyConsent", "PipelineConfig", "PipelinePorts",
           "PolicySource", "Releaser"]


class Clock(Protocol):
    """Now, as an aware UTC datetime. Time is a fact of the decision: nothing below reads a clock."""

    def __call__(self) -> datetime: ...


class PolicySource(Protocol):
    """The policy bundle that is live now, or None before one ever validated. A reload swaps the
    whole `ActivePolicy` at once, so one read gives one consistent bundle."""

    @property
    def active(self) -> ActivePolicy | None: ...


class ConsentLookup(Protocol):
    """The questions the pipeline asks the consent registry: who is this face (and this voice), who is named,
    which hash-list entries are near, which grants (and subject flags) hold right now. Any call may
    raise; the pipeline records a `ModelFailure` and the decision fails closed."""

    def match_faces(
        self, model_name: str, embeddings: np.ndarray, threshold: float
    ) -> list[list[FaceMatch]]: ...

    def match_voices(
        self, model_name: str, embeddings: np.ndarray, threshold: float
    ) -> list[list[FaceMatch]]:
        """Per speech window: the enrolled voices of `model_name` at cosine >= threshold, best first."""
        ...

    def match_names(self, prompt: str) -> list[tuple[str, str]]: ...

    def hash_hits(self, hashes: Sequence[str], max_distance: int) -> list[tuple[str, int]]: ...

    def grants_for(self, subject_ids: Sequence[str]) -> dict[str, tuple[GrantFact, ...]]: ...

    def subject_facts(self, subject_ids: Sequence[str]) -> dict[str, SubjectFact]: ...


class DecisionLookup(Protocol):
    """Finds a recorded decision by id in the audit log, only among `tenant`'s decisions: the stored record
    (as appended, without its `audit` field), or None. Used to bind an output to its input decision
    (issue #15.2: `gateway.pipeline.inherit`). May raise; the caller answers 503."""

    def find_decision(self, decision_id: str, tenant: str) -> Mapping[str, Any] | None: ...


class AuditSink(Protocol):
    """Appends one decision record to the audit log. Durable once `append` returns (exactly one
    entry per decision, written before anything is released); raises otherwise, and then the
    caller answers 503 and releases nothing."""

    def append(self, record: Mapping[str, Any]) -> AppendResult: ...


class Releaser(Protocol):
    """Carries out a verdict's obligations on a render and keeps the watermark-id ledger. Every
    method raises `gateway.provenance.errors.WatermarkError` or `SigningError` on failure — the
    type names the stage in the deny reason — and then nothing is released."""

    def release_image(
        self,
        rgb: np.ndarray,
        mime: str,
        *,
        media_index: int,
        decision_id: str,
        policy_digest: str,
        grant_ids: list[str],
        obligations: dict[str, Any],
        software_agent: dict[str, Any] | None = None,
    ) -> ReleasedImage:
        """Blur → watermark → encode in `mime` → C2PA-sign → record the watermark id."""
        ...

    def reserve_watermark_id(
        self, method: str, decision_id: str, draw: Callable[[str], int] | None = None
    ) -> int:
        """A fresh watermark id of `method`, recorded for `decision_id` before any frame is marked."""
        ...

    def finish_video(
        self, data: bytes, mime: str, *, claim: ReleaseClaim, sign: bool, watermark: tuple[str, int] | None
    ) -> SignedMedia:
        """After the marking pass: sign (when `sign`) and record the mark's id with the manifest digest."""
        ...

    def discard_watermarks(self, method: str, decision_id: str) -> None:
        """Forget the ids reserved for a decision that released nothing."""
        ...


@dataclass(frozen=True)
class PipelinePorts:
    """Everything stateful the pipeline uses, built once by the composition root."""

    policies: PolicySource
    consent: ConsentLookup
    audit: AuditSink
    releaser: Releaser
    clock: Clock
    metrics: Metrics
    decisions: DecisionLookup | None = None  # None: outputs cannot be bound to an input decision (refused)


@dataclass(frozen=True)
class PipelineConfig:
    """The deployment's limits and places (from Settings)."""

    limits: MediaLimits
    max_media_parts: int = 16
    working_max_side: int = 1024
    model_timeout_s: float = 10.0
    check_deadline_s: float = 30.0
    scratch_dir: Path = Path("./data/tmp")
    # Fixes every video's sampling seed (hex): only to replay a recorded decision or in tests;
    # None (the default) draws a fresh, unpredictable seed per video.
    video_sampling_seed: str | None = None
    # How long an input decision can back output checks of its use (gateway.pipeline.inherit).
    input_decision_max_age_s: float = 3600.0
    # An image check splits across cores unless this many checks are in flight, itself included;
    # None: no limit; 0 or 1: never (gateway.pipeline.parallel).
    split_below: int | None = None


class EmptyConsent:
    """No registry attached: nobody enrolled — no face matches, no names, no hashes, no grants."""

    def match_faces(self, model_name: str, embeddings: np.ndarray, threshold: float) -> list[list[FaceMatch]]:
        return [[] for _ in range(len(embeddings))]

    def match_voices(self, model_name: str, embeddings: np.ndarray, threshold: float) -> list[list[FaceMatch]]:
        return [[] for _ in range(len(embeddings))]

    def match_names(self, prompt: str) -> list[tuple[str, str]]:
        return []

    def hash_hits(self, hashes: Sequence[str], max_distance: int) -> list[tuple[str, int]]:
        return []

    def grants_for(self, subject_ids: Sequence[str]) -> dict[str, tuple[GrantFact, ...]]:
        return {}

    def subject_facts(self, subject_ids: Sequence[str]) -> dict[str, SubjectFact]:
        return {}
