"""Why: a face-model switch is a registry operation, not a CLI one. Templates are per face model
(and weights version), so before a policy may name another face model every enrolled subject needs
a template of it — otherwise that subject would match nobody (fail open). `face_model_ready` says
whether that holds (policy activation refuses a bundle when not); `switch_face_model` re-embeds
from the kept, encrypted enrolment images and raises `FaceModelNotReady` if anyone is left out.
The old model's templates are kept, so switching back needs no re-enrolment."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from classifiers.base import FaceAnalyzer
from gateway.registry.errors import FaceModelNotReady
from gateway.registry.models import (
    RegistryEnrolment,
    RegistryFaceTemplate,
    RegistryVoiceEnrolment,
    RegistryVoiceTemplate,
)
from gateway.registry.service import Registry

__all__ = ["FaceModelNotReady", "face_model_ready", "switch_face_model", "voice_model_ready"]


def face_model_ready(registry: Registry, model_name: str, model_version: str | None = None) -> tuple[bool, int]:
    """(ok, missing): every subject with an enrolment holds at least one template of `model_name` at
    the model's current version (`model_version`, else the attached analyzer's, else any version)."""
    if model_version is None:
        analyzer = registry.face_analyzers.get(model_name)
        model_version = analyzer.info.version if analyzer is not None else None
    t = RegistryFaceTemplate
    with Session(registry.engine) as s:
        enrolled = set(s.exec(select(RegistryEnrolment.subject_id).distinct()).all())
        query = select(t.subject_id).where(col(t.model) == model_name)
        if model_version is not None:
            query = query.where(col(t.model_version) == model_version)
        ready = set(s.exec(query.distinct()).all())
    missing = len(enrolled - ready)
    return missing == 0, missing


def switch_face_model(registry: Registry, model_name: str, analyzer: FaceAnalyzer) -> dict[str, Any]:
    """Attach `analyzer` under `model_name`, re-embed every subject from the kept enrolment images,
    and raise FaceModelNotReady if any enrolled subject is left without a template."""
    registry.face_analyzers[model_name] = analyzer
    report = dict(registry.reembed(model_name))
    ok, missing = face_model_ready(registry, model_name, analyzer.info.version)
    report.update(ready=ok, missing=missing)
    if not ok:
        raise FaceModelNotReady(model_name, missing, report)
    return report


def voice_model_ready(registry: Registry, model_name: str, model_version: str) -> tuple[bool, int]:
    """(ok, missing) for voices, as `face_model_ready` for faces: every subject with a voice enrolment
    holds a voice template of `model_name` at `model_version` — else its voice would match nobody."""
    t = RegistryVoiceTemplate
    with Session(registry.engine) as s:
        enrolled = set(s.exec(select(RegistryVoiceEnrolment.subject_id).distinct()).all())
        ready = set(s.exec(select(t.subject_id).where(col(t.model) == model_name)
                           .where(col(t.model_version) == model_version).distinct()).all())
    missing = len(enrolled - ready)
    return missing == 0, missing
