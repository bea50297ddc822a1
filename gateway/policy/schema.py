"""Why: the policy file is the admin's steering wheel, so its shape is a typed, documented
schema (pydantic, unknown keys refused) that is validated in full before it can go live.

The JSON Schema exported from `Policy` lives at `policies/schema.json` for editors.
Precedence of outcomes: deny > review > redact > allow (see `gateway.decision`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Outcome = Literal["allow", "review", "deny"]
ConsentOutcome = Literal["review", "deny", "redact"]
Stage = Literal["input", "output"]
MEDIA_USES = {"img2img", "face_swap", "txt2img", "txt2video", "img2video", "video2video"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(Strict):
    """A model instance: `adapter` is a registered adapter name; `options` go to its factory."""

    adapter: str
    options: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0, description="Per-call timeout; default from settings.")


class LabelThreshold(Strict):
    """Scores >= deny deny; scores >= review (and < deny) send to review. Either may be omitted."""

    deny: float | None = Field(default=None, ge=0, le=1)
    review: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> LabelThreshold:
        if self.deny is None and self.review is None:
            raise ValueError("a label threshold needs `deny`, `review` or both")
        if self.deny is not None and self.review is not None and self.review > self.deny:
            raise ValueError(f"review ({self.review}) must not be above deny ({self.deny})")
        return self


class NsfwCheck(Strict):
    """Run model `model` (a key of `models`) and compare each listed label with its thresholds."""

    model: str
    labels: dict[str, LabelThreshold]
    shadow: bool = Field(default=False, description="Evaluate and record under findings.shadow only.")
    fail_open: bool = Field(default=False, description="If the model fails, allow (recorded) instead of deny.")


class EnsembleMember(Strict):
    model: str
    label: str


class Ensemble(Strict):
    """Combine one label from several models (max or mean) and threshold the combined score."""

    name: str
    members: list[EnsembleMember] = Field(min_length=2)
    combine: Literal["max", "mean"] = "max"
    threshold: LabelThreshold
    shadow: bool = False


class FaceRules(Strict):
    """Consent handling for faces. Face and consent checks cannot be switched off for media.

    `unidentified` / `min_face_px` override the policy-wide `consent.unidentified` /
    `consent.min_face_px` for this use and stage (None = inherit). `require_faces`: each media part
    must carry at least this many identifiable faces (None = 1 for `face_swap` inputs, else 0)."""

    unmatched: Outcome = Field(default="allow", description="Faces that match no enrolled subject.")
    without_consent: ConsentOutcome = Field(
        default="deny", description="Matched subjects without a valid grant (protected subjects always deny)."
    )
    unidentified: Outcome | None = Field(
        default=None, description="Faces seen but not identifiable (no embedding, too small to match, "
        "profile); None = `consent.unidentified`.")
    min_face_px: int | None = Field(
        default=None, ge=1, le=100_000, description="Unidentified faces shorter than this (px, full "
        "resolution) are below a recognisable likeness and not ruled on; None = `consent.min_face_px`.")
    require_faces: int | None = Field(
        default=None, ge=0, le=100, description="Identifiable faces each media part must carry; "
        "None = 1 for face_swap inputs, 0 otherwise.")


class StageRules(Strict):
    nsfw: list[NsfwCheck] = Field(default_factory=list)
    ensembles: list[Ensemble] = Field(default_factory=list)
    faces: FaceRules = Field(default_factory=FaceRules)
    prompt: bool = Field(default=True, description="Apply the prompt rules to the request's prompt.")


class UsePolicy(Strict):
    input: StageRules | None = None
    output: StageRules | None = None
    allow_redact: bool = Field(default=False, description="Whether `redact` may replace deny for this use.")


class TermRule(Strict):
    id: str
    terms: list[str] = Field(default_factory=list)
    regexes: list[str] = Field(default_factory=list)
    outcome: Outcome = "deny"
    shadow: bool = False

    @field_validator("regexes")
    @classmethod
    def _compiles(cls, values: list[str]) -> list[str]:
        # Prompt rules run on RE2 (linear time in the prompt's length, whatever the pattern): a
        # pattern that only a backtracking engine can run (back-references, look-around) is refused
        # here, at load, rather than left to stall a replica on a long prompt (issue #15.1).
        import re

        import re2

        options = re2.Options()
        options.log_errors = False
        for pattern in values:
            if len(pattern) > 2000:
                raise ValueError(f"regex {pattern[:80]!r}... is refused: a rule regex is at most 2,000 characters")
            try:
                re.compile(pattern)  # the syntax every tool (policy explain, editors) reads too
            except (re.error, RecursionError, OverflowError) as exc:
                raise ValueError(f"regex {pattern[:80]!r} does not compile: {str(exc)[:200]}") from None
            try:
                re2.compile(pattern, options)
            except (re2.error, RecursionError, OverflowError, TypeError, ValueError) as exc:
                why = exc.args[0] if exc.args else exc
                why = why.decode("utf-8", "replace") if isinstance(why, bytes) else str(why)
                raise ValueError(
                    f"regex {pattern[:80]!r} is refused: prompt rules run on RE2 (linear time), which cannot "
                    f"run it ({why[:200]}); back-references and look-around are not supported") from None
        return values


class Concept(Strict):
    """A semantic concept: prompts whose embedding is within `threshold` cosine of an example fire."""

    id: str
    examples: list[str] = Field(min_length=1)
    threshold: float = Field(ge=-1, le=1)
    outcome: Outcome = "deny"
    shadow: bool = False


class PromptRules(Strict):
    rules: list[TermRule] = Field(default_factory=list)
    concepts: list[Concept] = Field(default_factory=list)
    text_model: ModelSpec | None = Field(default=None, description="Embedder for concepts (e.g. minilm).")
    names: bool = Field(default=True, description="Match enrolled names and aliases in the prompt.")


class ConsentSettings(Strict):
    face_model: ModelSpec = Field(default_factory=lambda: ModelSpec(adapter="dlib"))
    match_threshold: float = Field(default=0.92, ge=-1, le=1, description="Cosine similarity to match "
                                   "(dlib: between held-out genuine >= 0.928 and impostor <= 0.907; docs/faces.md).")
    near_match_margin: float = Field(
        default=0.01, ge=0, le=0.5, description="A face whose best similarity to an enrolled subject is "
        "within this of match_threshold (and below it) is `unidentified`, not `no_match`.")
    unidentified: Outcome = Field(
        default="review", description="A face that is seen but cannot be identified (no embedding, too "
        "small or turned to match with confidence): deny, review or allow. The shipped default never allows.")
    min_face_px: int = Field(
        default=40, ge=1, le=100_000, description="Unidentified faces shorter than this many pixels (at full "
        "resolution) are not ruled on (recorded only); identified matches always are.")
    face_proposals: list[str] = Field(
        default_factory=list, description="Aliases of `models` that also locate faces (NudeNet's FACE_* "
        "boxes): a second face detector. A face only they see is embedded when possible and is "
        "`unidentified` unless it matches. They run on every check with media.")
    identify_min_px: int = Field(
        default=40, ge=1, le=100_000, description="An unmatched face shorter than this is `unidentified`, "
        "not `no_match`: its embedding is not reliable enough to say it is nobody enrolled.")
    fail_open: Literal[False] = Field(default=False, description="Consent checks always fail closed.")
    voice_model: ModelSpec | None = Field(
        default_factory=lambda: ModelSpec(adapter="resemblyzer"),
        description="Speaker embedder for voice consent (issue #18); null: this policy takes no audio.")
    voice_match_threshold: float = Field(
        default=0.80, ge=-1, le=1, description="Cosine similarity at which a voice matches an enrolled voice "
        "(resemblyzer on held-out real speech: same speaker >= ~0.80, different <= ~0.74).")


class HashListSettings(Strict):
    model: ModelSpec = Field(default_factory=lambda: ModelSpec(adapter="pdq"))
    max_distance: int = Field(default=31, ge=0, le=128)


class WatermarkSpec(Strict):
    method: Literal["tileSync", "dwtDctSvd", "rivaGan", "trustMark"] = Field(
        default="tileSync", description="Image mark (gateway.provenance.marks); tileSync survives re-encodes, "
        "resizes, crops and small rotations (docs/api.md)")
    strength: float = Field(default=1.0, gt=0, le=10)


class Obligations(Strict):
    watermark: WatermarkSpec | None = Field(default_factory=WatermarkSpec)
    sign: bool = True


class LogMasking(Strict):
    prompt_text: bool = Field(default=False, description="Store prompt text in the audit log.")


class VideoSettings(Strict):
    """How video is sampled, judged, marked and encoded (see docs/video.md). Every field has a
    default, so a policy without a `video` section behaves as documented there."""

    sample_fps: float = Field(default=2.0, gt=0, le=30, description="Frames per second the models see "
                              "(plus the first frame of every scene).")
    scene_cut_threshold: float = Field(default=0.3, gt=0, le=1,
                                       description="Cut score that starts a new scene.")
    change_threshold: float = Field(default=0.15, gt=0, le=1, description="Colour change against the last "
                                    "analysed frame that forces analysis of a frame between the regular samples "
                                    "(docs/video.md).")
    release_min_sample_fps: float = Field(default=2.0, gt=0, le=30, description="The release path samples at "
                                          "least this often, whatever `sample_fps` says.")
    crf: int = Field(default=23, ge=0, le=51,
                     description="libx264 quality of the released MP4 (lower is better).")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                    "veryslow"] = Field(default="veryfast", description="libx264 speed/size trade-off.")
    watermark_strength: float = Field(default=2.0, gt=0, le=16, description="Video watermark amplitude in "
                                      "luma levels (measured robustness and cost: docs/video.md).")
    overlap: bool = Field(default=True, description="Mark and encode in the same decode pass as the "
                          "analysis; the marked file is discarded unless the decision allows it.")
    max_bytes: int = Field(default=200 * 1024 * 1024, gt=0, description="Largest video accepted (bytes).")
    max_seconds: float = Field(default=600.0, gt=0, description="Longest video accepted (seconds).")
    max_width: int = Field(default=3840, gt=0, description="Largest frame width (either orientation).")
    max_height: int = Field(default=2160, gt=0, description="Largest frame height (either orientation).")
    max_frames: int = Field(default=36_000, gt=0, description="Most frames accepted.")
    sync_max_bytes: int = Field(default=20 * 1024 * 1024, ge=0, description="Videos up to this size (and "
                                "`sync_max_seconds`) may use /v1/check and /v1/release directly; larger "
                                "ones go through /v1/jobs.")
    sync_max_seconds: float = Field(default=30.0, ge=0, description="Longest video /v1/check and /v1/release "
                                    "take directly.")


class Overridable(Strict):
    """Settings a tenant overlay may loosen (by default overlays may only tighten)."""

    settings: list[str] = Field(default_factory=list)


class RetentionRule(Strict):
    """How long one modality's enrolment (templates, kept images) may be kept (BIPA §15(a), GDPR
    Art. 5(1)(e)). A subject with a grant in force is kept; a protected subject (no-go list) is kept
    while protection is its purpose, unless `max_age_days` says otherwise."""

    max_age_days: int | None = Field(default=None, ge=1, description="Since the latest enrolment.")
    max_idle_days: int | None = Field(default=None, ge=1, description="Since the last interaction: "
                                      "enrolment, grant, or a decision that matched them.")
    purpose_end: bool = Field(default=True, description="Delete once every grant has ended (revoked or "
                              "expired) and `grace_days` have passed.")
    grace_days: int = Field(default=30, ge=0)
    ceiling_days: int = Field(default=1095, ge=1, description="BIPA §15(a): never longer than 3 years after "
                              "the last interaction.")


class RetentionSettings(Strict):
    enabled: bool = Field(default=True, description="Run the retention sweeper in the serving process.")
    sweep_interval_s: float = Field(default=3600.0, ge=1)
    face: RetentionRule = Field(default_factory=RetentionRule)
    voice: RetentionRule = Field(default_factory=RetentionRule)


class Policy(Strict):
    """A complete policy: models, per-use rules, consent, prompt and hash-list rules, obligations."""

    name: str
    description: str = ""
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    consent: ConsentSettings = Field(default_factory=ConsentSettings)
    prompt: PromptRules = Field(default_factory=PromptRules)
    hash_list: HashListSettings = Field(default_factory=HashListSettings)
    obligations: Obligations = Field(default_factory=Obligations)
    logging: LogMasking = Field(default_factory=LogMasking)
    video: VideoSettings = Field(default_factory=VideoSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    uses: dict[str, UsePolicy]
    tenant_may_loosen: Overridable = Field(default_factory=Overridable)

    @model_validator(mode="after")
    def _references(self) -> Policy:
        for alias in self.consent.face_proposals:
            if alias not in self.models:
                raise ValueError(f"consent.face_proposals: model {alias!r} is not defined under `models`")
        for use, up in self.uses.items():
            for stage_name in ("input", "output"):
                stage: StageRules | None = getattr(up, stage_name)
                if stage is None:
                    continue
                for check in stage.nsfw:
                    if check.model not in self.models:
                        raise ValueError(
                            f"uses.{use}.{stage_name}.nsfw: model {check.model!r} is not defined under `models`"
                        )
                for ens in stage.ensembles:
                    for member in ens.members:
                        if member.model not in self.models:
                            raise ValueError(
                                f"uses.{use}.{stage_name}.ensembles.{ens.name}: model {member.model!r} "
                                "is not defined under `models`"
                            )
                if stage.faces.without_consent == "redact" and not up.allow_redact:
                    raise ValueError(
                        f"uses.{use}.{stage_name}.faces.without_consent is `redact` but "
                        f"uses.{use}.allow_redact is false"
                    )
        return self


def export_json_schema() -> dict[str, Any]:
    return Policy.model_json_schema()
