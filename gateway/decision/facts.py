"""Why: the decision is a pure function of policy and *facts*. Facts are what the edges found out
(classifier scores, faces and who they match, grants read from the database, the clock) frozen
into plain values, so a decision can be replayed and a policy tested as a table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ModelFailure:
    """A check that could not run: the model raised, timed out, or a dependency was down."""

    check: str
    model: str
    message: str


@dataclass(frozen=True)
class NsfwFact:
    media_index: int
    model: str
    adapter: str
    model_version: str
    scores: dict[str, float]
    frame: int | None = None
    t: float | None = None


@dataclass(frozen=True)
class FaceMatch:
    subject_id: str
    similarity: float


@dataclass(frozen=True)
class FaceFact:
    """A face seen in media `media_index` (bbox in full-resolution pixels). `unidentified` says why
    the face could not be identified (no embedding, too small or turned to match with confidence);
    None when its embedding was matched with confidence (then no matches means nobody enrolled)."""

    media_index: int
    bbox: tuple[int, int, int, int]
    det_score: float
    matches: tuple[FaceMatch, ...] = ()
    frame: int | None = None
    t: float | None = None
    unidentified: str | None = None

    @property
    def size_px(self) -> int:
        """The shorter side of the box: what decides whether a face is big enough to recognise."""
        return max(0, min(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))


@dataclass(frozen=True)
class VoiceFact:
    """A stretch of speech in audio media `media_index` (seconds `start`..`end`; for a video, of its
    soundtrack). `unidentified` says why it could not be identified (too little speech to embed with
    confidence); None when its embedding was matched (then no matches means nobody enrolled)."""

    media_index: int
    start: float
    end: float
    matches: tuple[FaceMatch, ...] = ()
    unidentified: str | None = None


@dataclass(frozen=True)
class NameFact:
    """An enrolled subject's name or alias found in the prompt."""

    subject_id: str
    text: str


@dataclass(frozen=True)
class InheritedFact:
    """An identity the output inherits from its input decision (issue #15.2): a subject whose face,
    voice or name the *input* decision `input_decision_id` found (`source`: face | voice | name). The
    render is made from that reference, so it needs that subject's grant for the use whether or not
    the render's own face still matches well."""

    subject_id: str
    source: str
    input_decision_id: str


@dataclass(frozen=True)
class HashHit:
    media_index: int
    subject_id: str
    distance: int


@dataclass(frozen=True)
class GrantFact:
    id: str
    subject_id: str
    grantee_tenant: str
    grantee_end_user: str | None
    uses: tuple[str, ...]
    valid_from: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class SubjectFact:
    id: str
    protected: bool


@dataclass(frozen=True)
class Facts:
    stage: str
    use: str
    tenant: str
    end_user: str | None
    now: datetime
    media_count: int = 0
    prompt: str | None = None
    nsfw: tuple[NsfwFact, ...] = ()
    faces: tuple[FaceFact, ...] = ()
    names: tuple[NameFact, ...] = ()
    concepts: dict[str, float] = field(default_factory=dict)
    hash_hits: tuple[HashHit, ...] = ()
    subjects: dict[str, SubjectFact] = field(default_factory=dict)
    grants: dict[str, tuple[GrantFact, ...]] = field(default_factory=dict)
    failures: tuple[ModelFailure, ...] = ()
    media_kind: str = "image"
    voices: tuple[VoiceFact, ...] = ()
    inherited: tuple[InheritedFact, ...] = ()  # identities of the input decision (output stage only)
