"""Why: a voice is a likeness (issue #18). Enrolling one must prove, like a face enrolment, that the
clips carry enough speech of exactly one person; the templates are then sealed per subject and model
(like face templates), the speech is kept sealed for re-embedding when the voice model changes, and
everything goes with the subject on erasure.

The gate (`VoiceGate`), per clip: voice activity of at least `min_speech_s` seconds (else 422
`no_speech` / `too_little_speech`); one speaker within the clip (the partial windows split into two
groups whose centroids are further apart than `same_speaker` → 422 `multiple_speakers`), and the
same speaker across the clips of one enrolment. A template is the embedding of the clip's speech
(silence cut out by the voice activity detector).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlmodel import Session, col, delete, select

from classifiers.base import SpeechSegment, VoiceEmbedder
from gateway.registry.core import RegistryCore
from gateway.registry.errors import EnrolmentError, RegistryUnavailable, SubjectNotFound
from gateway.registry.ledger import append_entry, ledger_record
from gateway.registry.models import (
    RegistrySubject,
    RegistryTemplateRemoval,
    RegistryVoiceClip,
    RegistryVoiceEnrolment,
    RegistryVoiceTemplate,
    VoiceEnrolmentResult,
)
from gateway.registry.records import utcnow
from gateway.registry.store import bump

CLIP = "voice_clip"
COUNTER = "faces"  # one change counter for every kind of template: the indexes poll it
MAX_CLIPS = 10


class UnknownVoiceModel(RegistryUnavailable):
    """No voice model of that name is attached (no active policy names it): lookups fail closed."""

    def __init__(self, name: str) -> None:
        super().__init__(f"voice model {name!r} is not attached to the consent registry")
        self.name = name


@dataclass(frozen=True)
class VoiceGate:
    min_speech_s: float = 3.0  # voice activity per clip
    same_speaker: float = 0.75  # cosine under which two groups of speech are two people (resemblyzer scale)


def voice_purpose(model: str, model_version: str) -> str:
    return f"voice_template|{model}|{model_version}"


def removal_key(model: str) -> str:
    """The `model` a voice template's tombstone carries (apart from face models of the same name)."""
    return f"voice/{model}"


def speech_only(samples: np.ndarray, segments: Sequence[SpeechSegment], rate: int) -> np.ndarray:
    """The samples inside the speech segments, joined (silence cut out)."""
    parts = [samples[int(s.start * rate): int(s.end * rate)] for s in segments]
    return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)


def _unit(vec: np.ndarray) -> np.ndarray:
    return (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32)


def speakers_differ(partials: np.ndarray, same_speaker: float) -> bool:
    """Whether the windows split into two groups of speech (two windows each at least) whose centroids
    are less alike than `same_speaker`: the farthest pair seeds the groups, every window joins the nearer."""
    if len(partials) < 4:
        return False
    sims = partials @ partials.T
    a, b = np.unravel_index(int(np.argmin(sims)), sims.shape)
    near_a = sims[:, a] >= sims[:, b]
    if near_a.sum() < 2 or (~near_a).sum() < 2:
        return False
    ca, cb = _unit(partials[near_a].mean(axis=0)), _unit(partials[~near_a].mean(axis=0))
    return float(ca @ cb) < same_speaker


def clip_template(
    embedder: VoiceEmbedder, clip: np.ndarray, index: int, gate: VoiceGate
) -> tuple[np.ndarray, float]:
    """(template, seconds of speech) of one enrolment clip, or the EnrolmentError that says why not."""
    model = embedder.info.name
    segments = embedder.speech(clip)
    speech = speech_only(clip, segments, embedder.sample_rate)
    seconds = len(speech) / embedder.sample_rate
    if seconds == 0:
        raise EnrolmentError("no_speech", f"clip {index}: no speech heard (voice model {model!r})", index)
    if seconds < gate.min_speech_s:
        raise EnrolmentError("too_little_speech", f"clip {index}: {seconds:.1f} s of speech; an enrolment clip "
                             f"needs at least {gate.min_speech_s:g} s", index)
    _starts, partials = embedder.partials(speech)
    if speakers_differ(partials, gate.same_speaker):
        raise EnrolmentError("multiple_speakers", f"clip {index}: more than one voice heard (voice model "
                             f"{model!r}); an enrolment clip must hold one person's speech", index)
    return _unit(partials.mean(axis=0)), seconds


def templates_for(
    embedder: VoiceEmbedder, clips: Sequence[np.ndarray], gate: VoiceGate
) -> tuple[list[np.ndarray], list[float]]:
    out = [clip_template(embedder, clip, i, gate) for i, clip in enumerate(clips)]
    templates = [t for t, _ in out]
    if len(templates) > 1:
        for i, t in enumerate(templates):
            others = _unit(np.mean([u for j, u in enumerate(templates) if j != i], axis=0))
            if float(t @ others) < gate.same_speaker:
                raise EnrolmentError("multiple_speakers", f"clip {i}: another voice than the other clips "
                                     f"(voice model {embedder.info.name!r}); one enrolment is one person", i)
    return templates, [round(s, 2) for _, s in out]


def _pcm(clip: np.ndarray) -> bytes:
    pcm: bytes = (np.clip(clip, -1.0, 1.0) * 32767).round().astype("<i2").tobytes()
    return pcm


def _unpcm(data: bytes) -> np.ndarray:
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767).astype(np.float32)


def _rows(reg: RegistryCore, subject_id: str, enrolment_id: str, model: str, templates: Sequence[np.ndarray],
          now: datetime) -> list[RegistryVoiceTemplate]:
    version = reg.voice_embedders[model].info.version
    purpose = voice_purpose(model, version)
    return [RegistryVoiceTemplate(subject_id=subject_id, enrolment_id=enrolment_id, model=model, model_version=version,
                                  dim=int(t.size), embedding_ct=reg.crypto.encrypt(subject_id, t.tobytes(), purpose),
                                  created_at=now) for t in templates]


def enroll_voice(reg: RegistryCore, subject_id: str, clips: Sequence[np.ndarray], notice: str, enrolled_by: str,
                 gate: VoiceGate) -> VoiceEnrolmentResult:
    if not 1 <= len(clips) <= MAX_CLIPS:
        raise EnrolmentError("clip_count", f"voice enrolment takes 1 to {MAX_CLIPS} clips, got {len(clips)}")
    if not reg.voice_embedders:
        raise RegistryUnavailable("no voice model is attached to the consent registry (no active policy names one)")
    with Session(reg.engine) as s:
        if s.get(RegistrySubject, subject_id) is None:
            raise SubjectNotFound(subject_id)
    per_model: dict[str, list[np.ndarray]] = {}
    seconds: list[float] = []
    for name, embedder in sorted(reg.voice_embedders.items()):  # every clip passes every model's gate first
        per_model[name], seconds = templates_for(embedder, clips, gate)
    enrolment_id = secrets.token_hex(16)
    now = utcnow()
    sealed = [reg.crypto.encrypt(subject_id, _pcm(c), CLIP) for c in clips] if reg.keep_enrolment_images else []
    with Session(reg.engine) as s:
        bump(s, COUNTER)
        if s.get(RegistrySubject, subject_id) is None:  # erased meanwhile
            raise SubjectNotFound(subject_id)
        s.add(RegistryVoiceEnrolment(id=enrolment_id, subject_id=subject_id, notice_version=notice,
                                     enrolled_by=enrolled_by, clip_count=len(clips), created_at=now))
        s.flush()
        for name, templates in per_model.items():
            s.add_all(_rows(reg, subject_id, enrolment_id, name, templates, now))
        s.add_all(RegistryVoiceClip(subject_id=subject_id, enrolment_id=enrolment_id, clip_ct=ct, created_at=now)
                  for ct in sealed)
        s.flush()
        # The consent ledger (#17.1): in this transaction; never the speech or the templates.
        append_entry(reg.ledger, s, [ledger_record(
            "enrolment", subject_id, enrolled_by, reg.ledger_tenant, enrolment_id=enrolment_id, modality="voice",
            clip_count=len(clips), notice_version=notice, images_kept=bool(sealed),
            templates={n: len(t) for n, t in per_model.items()},
            models={n: reg.voice_embedders[n].info.version for n in per_model})])
        s.commit()
    return VoiceEnrolmentResult(enrolment_id=enrolment_id, subject_id=subject_id, notice_version=notice,
                                clips=len(clips), speech_seconds=seconds,
                                templates={n: len(t) for n, t in per_model.items()}, clips_kept=bool(sealed),
                                created_at=now)


def reembed_voices(reg: RegistryCore, model_name: str, gate: VoiceGate) -> dict[str, Any]:
    """Recompute `model_name` voice templates from the kept enrolment speech."""
    embedder = reg.voice_embedders[model_name]
    counts = {"subjects": 0, "templates": 0, "skipped_clips": 0, "removed": 0}
    with Session(reg.engine) as s:
        subject_ids = list(s.exec(select(RegistryVoiceClip.subject_id).distinct()).all())
    for subject_id in subject_ids:
        with Session(reg.engine) as s:
            rows = s.exec(select(RegistryVoiceClip).where(RegistryVoiceClip.subject_id == subject_id)
                          .order_by(col(RegistryVoiceClip.id))).all()
            fresh: list[RegistryVoiceTemplate] = []
            now = utcnow()
            for i, row in enumerate(rows):
                clip = _unpcm(reg.crypto.decrypt(subject_id, row.clip_ct, CLIP))
                try:
                    template, _ = clip_template(embedder, clip, i, gate)
                except EnrolmentError:
                    counts["skipped_clips"] += 1
                    continue
                fresh += _rows(reg, subject_id, row.enrolment_id, model_name, [template], now)
            bump(s, COUNTER)
            old = s.exec(select(RegistryVoiceTemplate.seq).where(
                RegistryVoiceTemplate.subject_id == subject_id, RegistryVoiceTemplate.model == model_name)).all()
            s.add_all(RegistryTemplateRemoval(template_seq=seq or 0, model=removal_key(model_name)) for seq in old)
            counts["removed"] += len(old)
            s.exec(delete(RegistryVoiceTemplate).where(col(RegistryVoiceTemplate.subject_id) == subject_id,
                                                       col(RegistryVoiceTemplate.model) == model_name))
            s.add_all(fresh)
            s.flush()
            append_entry(reg.ledger, s, [ledger_record(
                "enrolment", subject_id, "reembed", reg.ledger_tenant, event="reembedded", modality="voice",
                model=model_name, model_version=embedder.info.version, templates=len(fresh), removed=len(old))])
            s.commit()
        counts["subjects"] += 1
        counts["templates"] += len(fresh)
    return {"model": model_name, "model_version": embedder.info.version, "kind": "voice", **counts}


def erase_voice_rows(s: Session, subject_id: str) -> dict[str, int]:
    """Inside the erasure transaction: tombstone and delete the subject's voice rows (before the subject row)."""
    old = s.exec(select(RegistryVoiceTemplate.seq, RegistryVoiceTemplate.model)
                 .where(RegistryVoiceTemplate.subject_id == subject_id)).all()
    s.add_all(RegistryTemplateRemoval(template_seq=seq or 0, model=removal_key(model)) for seq, model in old)
    counts = {}
    for label, table in (("voice_templates", RegistryVoiceTemplate), ("voice_clips", RegistryVoiceClip),
                         ("voice_enrolments", RegistryVoiceEnrolment)):
        result = s.exec(delete(table).where(col(table.subject_id) == subject_id))
        counts[label] = int(result.rowcount)
    return counts
