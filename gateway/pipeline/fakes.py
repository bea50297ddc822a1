"""Why: the pipeline must be testable without a database, keys or a C2PA signer — and its fail-closed
paths must be testable on demand. Each port of `gateway.pipeline.ports` has a memory implementation
here with fault hooks (as `classifiers/fake.py` does for models): break a stage, run a decision,
assert deny and exactly one audit entry.

    StaticPolicies   PolicySource    a fixed ActivePolicy (None: no policy loaded)
    MemoryConsent    ConsentLookup   subjects, templates, names, hashes and grants in dicts; `faults.unavailable`
    MemoryAudit      AuditSink       records in a list, leaf hashes as the real log computes them;
                                     `faults.fail_appends` (next N appends raise)
    MemoryReleaser   Releaser        encodes without marking or signing, keeps the watermark ledger;
                                     `faults.watermark_fails`, `faults.sign_fails`
    ManualClock      Clock           a clock that moves only when told
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from gateway.audit import AppendResult, canonical_json, leaf_hash
from gateway.decision.facts import FaceMatch, GrantFact, SubjectFact
from gateway.media import encode_image
from gateway.policy.manager import ActivePolicy
from gateway.provenance.c2pa_sign import ReleaseClaim, SignedMedia
from gateway.provenance.errors import SigningError, WatermarkError
from gateway.provenance.service import ReleasedImage

__all__ = ["ConsentFaults", "ManualClock", "MemoryAudit", "MemoryAuditFaults", "MemoryConsent", "MemoryReleaser",
           "ReleaserFaults", "StaticPolicies"]


@dataclass
class StaticPolicies:
    """A PolicySource that serves one bundle (or none)."""

    active: ActivePolicy | None = None


class ManualClock:
    """A Clock fixed at `start` (UTC) until `advance` or `set` moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def set(self, now: datetime) -> None:
        self.now = now


@dataclass
class ConsentFaults:
    """`unavailable = True`: every lookup raises (the registry is down; the pipeline fails closed)."""

    unavailable: bool = False


@dataclass
class MemoryConsent:
    """A ConsentLookup over dicts. `templates[model]` holds (subject id, unit embedding) pairs, and
    `voice_templates[model]` the same for voices."""

    templates: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # lower-case name -> subject id
    hashes: dict[str, list[str]] = field(default_factory=dict)  # subject id -> PDQ hex
    grants: dict[str, list[GrantFact]] = field(default_factory=dict)
    subjects: dict[str, SubjectFact] = field(default_factory=dict)
    faults: ConsentFaults = field(default_factory=ConsentFaults)
    voice_templates: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)

    def _guard(self) -> None:
        if self.faults.unavailable:
            raise RuntimeError("consent registry unavailable (fault injected)")

    def match_faces(self, model_name: str, embeddings: np.ndarray, threshold: float) -> list[list[FaceMatch]]:
        self._guard()
        out: list[list[FaceMatch]] = []
        for vector in np.asarray(embeddings, dtype=np.float32):
            found = [FaceMatch(sid, float(np.dot(vector, t))) for sid, t in self.templates.get(model_name, [])]
            out.append(sorted((m for m in found if m.similarity >= threshold), key=lambda m: -m.similarity))
        return out

    def match_voices(self, model_name: str, embeddings: np.ndarray, threshold: float) -> list[list[FaceMatch]]:
        self._guard()
        out: list[list[FaceMatch]] = []
        for vector in np.asarray(embeddings, dtype=np.float32):
            found = [FaceMatch(sid, float(np.dot(vector, t))) for sid, t in self.voice_templates.get(model_name, [])]
            out.append(sorted((m for m in found if m.similarity >= threshold), key=lambda m: -m.similarity))
        return out

    def match_names(self, prompt: str) -> list[tuple[str, str]]:
        self._guard()
        text = prompt.lower()
        return [(sid, name) for name, sid in self.names.items() if name in text]

    def hash_hits(self, hashes: Sequence[str], max_distance: int) -> list[tuple[str, int]]:
        self._guard()
        hits: list[tuple[str, int]] = []
        for sid, listed in self.hashes.items():
            best = min(((int(h, 16) ^ int(x, 16)).bit_count() for h in hashes for x in listed), default=None)
            if best is not None and best <= max_distance:
                hits.append((sid, best))
        return hits

    def grants_for(self, subject_ids: Sequence[str]) -> dict[str, tuple[GrantFact, ...]]:
        self._guard()
        return {sid: tuple(self.grants[sid]) for sid in subject_ids if sid in self.grants}

    def subject_facts(self, subject_ids: Sequence[str]) -> dict[str, SubjectFact]:
        self._guard()
        return {sid: self.subjects[sid] for sid in subject_ids if sid in self.subjects}


@dataclass
class MemoryAuditFaults:
    """The next `fail_appends` appends raise before anything is stored."""

    fail_appends: int = 0


@dataclass
class MemoryAudit:
    """An AuditSink in a list: index = position, leaf hash = SHA-256(0x00 ‖ canonical JSON), as the
    real log computes it; no checkpoints (`checkpoint` is always None, i.e. pending)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    faults: MemoryAuditFaults = field(default_factory=MemoryAuditFaults)

    def append(self, record: Mapping[str, Any]) -> AppendResult:
        if self.faults.fail_appends > 0:
            self.faults.fail_appends -= 1
            raise RuntimeError("audit append failed (fault injected)")
        stored = dict(record)
        self.records.append(stored)
        return AppendResult(len(self.records) - 1, leaf_hash(canonical_json(stored)).hex(), None)

    def find_decision(self, decision_id: str, tenant: str) -> Mapping[str, Any] | None:
        """The DecisionLookup port over the list."""
        return next((r for r in self.records if r.get("decision_id") == decision_id and r.get("tenant") == tenant
                     and r.get("kind", "decision") == "decision"), None)


@dataclass
class ReleaserFaults:
    watermark_fails: bool = False
    sign_fails: bool = False


@dataclass
class MemoryReleaser:
    """A Releaser that marks and signs nothing: it re-encodes the pixels, pretends to sign (the
    manifest digest is the SHA-256 of the bytes) and keeps the watermark ledger in a dict."""

    faults: ReleaserFaults = field(default_factory=ReleaserFaults)
    ledger: dict[tuple[str, int], str] = field(default_factory=dict)  # (method, id) -> decision id
    signed: list[str] = field(default_factory=list)  # decision ids whose renders were "signed"
    _ids: Callable[[], int] = field(default_factory=lambda: itertools.count(1).__next__)

    def _mark(self, method: str, decision_id: str, draw: Callable[[str], int] | None = None) -> int:
        if self.faults.watermark_fails:
            raise WatermarkError("watermark failed (fault injected)")
        wm_id = draw(method) if draw is not None else self._ids()
        self.ledger[(method, wm_id)] = decision_id
        return wm_id

    def sign(self, data: bytes, mime: str, claim: ReleaseClaim) -> SignedMedia:
        if self.faults.sign_fails:
            raise SigningError("C2PA signing failed (fault injected)")
        self.signed.append(claim.decision_id)
        return SignedMedia(data, hashlib.sha256(data).hexdigest())

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
        wm = obligations.get("watermark")
        wm_id = self._mark(str(wm["method"]), decision_id) if wm is not None else None
        data = encode_image(np.ascontiguousarray(rgb, dtype=np.uint8), mime)
        digest = None
        if obligations.get("sign"):
            claim = ReleaseClaim(decision_id=decision_id, policy_digest=policy_digest, grant_ids=tuple(grant_ids))
            digest = self.sign(data, mime, claim).manifest_digest
        watermark_id = f"{wm['method']}:{wm_id}" if wm is not None else None
        return ReleasedImage(data, mime, media_index, hashlib.sha256(data).hexdigest(), digest, watermark_id)

    def reserve_watermark_id(self, method: str, decision_id: str, draw: Callable[[str], int] | None = None) -> int:
        return self._mark(method, decision_id, draw)

    def finish_video(self, data: bytes, mime: str, *, claim: ReleaseClaim, sign: bool,
                     watermark: tuple[str, int] | None) -> SignedMedia:
        if watermark is not None and self.faults.watermark_fails:
            raise WatermarkError("watermark failed (fault injected)")
        return self.sign(data, mime, claim) if sign else SignedMedia(data, "")

    def discard_watermarks(self, method: str, decision_id: str) -> None:
        for key in [k for k, v in self.ledger.items() if k[0] == method and v == decision_id]:
            del self.ledger[key]
