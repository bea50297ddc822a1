"""Why: voice enrolment must refuse clips that cannot prove one person's voice, seal what it keeps,
match that voice later, re-embed it for a new model, and forget it on erasure (issue #18 point 3).
The fake voice model hears tones as voices (classifiers.fake): fast and exact."""

from __future__ import annotations

import numpy as np
import pytest
from sqlmodel import Session, select

from classifiers import builtin_registry, fake_voice_embedding, fake_voice_samples
from gateway.registry.errors import EnrolmentError, RegistryUnavailable, SubjectNotFound
from gateway.registry.models import RegistryVoiceClip, RegistryVoiceTemplate
from gateway.registry.voices import UnknownVoiceModel
from tests.registry.conftest import MakeRegistry

pytestmark = pytest.mark.db

SILENCE = np.zeros(16_000, dtype=np.float32)


def _registry(make_registry: MakeRegistry):  # type: ignore[no-untyped-def]
    reg = make_registry()
    reg.voice_embedders["fake"] = builtin_registry().voice("fake")
    return reg


def test_enrol_match_and_erase(make_registry: MakeRegistry) -> None:
    reg = _registry(make_registry)
    subject = reg.create_subject("Voice Actor")
    result = reg.enroll_voice(subject.id, [fake_voice_samples(7, 4.0), np.concatenate(
        [SILENCE, fake_voice_samples(7, 3.5), SILENCE])], "notice-v1", "registrar-key")
    assert result.clips == 2 and result.templates == {"fake": 2} and result.clips_kept
    assert result.speech_seconds[0] == pytest.approx(4.0, abs=0.05)
    assert result.speech_seconds[1] == pytest.approx(3.5, abs=0.05)
    shown = reg.get_subject(subject.id)
    assert shown.voice_models == ["fake"] and shown.voice_template_count == 2 and shown.template_count == 0

    query = np.stack([fake_voice_embedding(7), fake_voice_embedding(8)])
    hits = reg.match_voices("fake", query, 0.8)
    assert [m.subject_id for m in hits[0]] == [subject.id] and hits[0][0].similarity == pytest.approx(1.0, abs=1e-5)
    assert hits[1] == []

    with Session(reg.engine) as s:  # sealed: no clear embedding or PCM in the rows
        tmpl = s.exec(select(RegistryVoiceTemplate)).all()
        clips = s.exec(select(RegistryVoiceClip)).all()
    assert len(tmpl) == 2 and len(clips) == 2
    assert fake_voice_embedding(7).tobytes()[:32] not in tmpl[0].embedding_ct

    receipt = reg.erase(subject.id, "registrar-key")
    assert receipt["counts"]["voice_templates"] == 2 and receipt["counts"]["voice_clips"] == 2
    assert receipt["counts"]["voice_enrolments"] == 1
    assert reg.match_voices("fake", query, 0.8) == [[], []]
    with Session(reg.engine) as s:
        assert s.exec(select(RegistryVoiceTemplate)).all() == []


@pytest.mark.parametrize(
    ("clips", "code"),
    [
        ([SILENCE], "no_speech"),
        ([fake_voice_samples(7, 2.0)], "too_little_speech"),
        ([np.concatenate([fake_voice_samples(7, 3.0), fake_voice_samples(90, 3.0)])], "multiple_speakers"),
        ([fake_voice_samples(7, 4.0), fake_voice_samples(90, 4.0)], "multiple_speakers"),
        ([fake_voice_samples(7, 4.0)] * 11, "clip_count"),
        ([], "clip_count"),
    ],
)
def test_refused_clips_say_why_and_write_nothing(make_registry: MakeRegistry, clips: list[np.ndarray],
                                                 code: str) -> None:
    reg = _registry(make_registry)
    subject = reg.create_subject("Voice Actor")
    with pytest.raises(EnrolmentError) as info:
        reg.enroll_voice(subject.id, clips, "notice-v1", "k")
    assert info.value.code == code
    assert reg.get_subject(subject.id).voice_template_count == 0


def test_enrolment_needs_a_voice_model_a_subject_and_a_notice(make_registry: MakeRegistry) -> None:
    reg = make_registry()
    subject = reg.create_subject("Voice Actor")
    with pytest.raises(RegistryUnavailable, match="no voice model"):
        reg.enroll_voice(subject.id, [fake_voice_samples(7, 4.0)], "notice-v1", "k")
    reg.voice_embedders["fake"] = builtin_registry().voice("fake")
    with pytest.raises(SubjectNotFound):
        reg.enroll_voice("nobody", [fake_voice_samples(7, 4.0)], "notice-v1", "k")
    with pytest.raises(Exception, match="notice_version"):
        reg.enroll_voice(subject.id, [fake_voice_samples(7, 4.0)], " ", "k")
    with pytest.raises(UnknownVoiceModel):
        reg.match_voices("resemblyzer", np.zeros((1, 64), np.float32), 0.8)


def test_reembed_recomputes_from_the_kept_speech(make_registry: MakeRegistry) -> None:
    reg = _registry(make_registry)
    subject = reg.create_subject("Voice Actor")
    reg.enroll_voice(subject.id, [fake_voice_samples(12, 4.0)], "notice-v1", "k")
    other = builtin_registry().voice("fake")
    other.info = type(other.info)(name="fake", version="fake-2")  # the "new version" of the model
    reg.voice_embedders["fake"] = other
    assert reg.match_voices("fake", fake_voice_embedding(12)[None, :], 0.8) == [[]]  # no templates at fake-2
    report = reg.reembed_voices("fake")
    assert report["kind"] == "voice" and report["templates"] == 1 and report["removed"] == 1
    assert report["model_version"] == "fake-2"
    hits = reg.match_voices("fake", fake_voice_embedding(12)[None, :], 0.8)
    assert [m.subject_id for m in hits[0]] == [subject.id]
    with pytest.raises(UnknownVoiceModel):
        reg.reembed_voices("nope")
