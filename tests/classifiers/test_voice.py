"""Why: the voice family must tell speakers apart on speech it has never heard, whatever the
sentence, and the fake must behave predictably for the pipeline's tests. Speech is made at test
time by espeak-ng (tests/support/speech.py); nothing personal is in the repository."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from classifiers import FaultHook, ModelError, builtin_registry, fake_voice_embedding, fake_voice_samples
from classifiers.voice_resemblyzer import mel_filterbank, mel_spectrogram
from tests.support.speech import SENTENCES, VOICE_A, VOICE_B, speech

if TYPE_CHECKING:
    from tests.classifiers.conftest import ModelCache


def test_resemblyzer_same_voice_other_sentence_close_other_voice_far(models: ModelCache) -> None:
    model = models.get("voice", "resemblyzer")
    enrol = model.embed([speech(SENTENCES[0], VOICE_A), speech(SENTENCES[1], VOICE_A)]).mean(axis=0)
    enrol /= np.linalg.norm(enrol)
    same = model.embed([speech(SENTENCES[3], VOICE_A)])[0]
    other = model.embed([speech(SENTENCES[3], VOICE_B)])[0]
    assert float(same @ enrol) >= 0.85
    assert float(other @ enrol) <= 0.75


def test_resemblyzer_volume_change_keeps_the_voice(models: ModelCache) -> None:
    model = models.get("voice", "resemblyzer")
    clip = speech(SENTENCES[2], VOICE_A)
    quiet, loud = model.embed([clip * np.float32(0.5), np.clip(clip * np.float32(2.0), -1, 1)])
    assert float(quiet @ loud) >= 0.95


def test_resemblyzer_model_version_is_the_weights_digest(models: ModelCache) -> None:
    import hashlib

    from classifiers._common import package_file

    digest = hashlib.sha256(package_file("resemblyzer", "pretrained.pt").read_bytes()).hexdigest()[:16]
    assert models.get("voice", "resemblyzer").info.version == digest


def test_mel_filterbank_is_librosas_slaney_bank() -> None:
    bank = mel_filterbank()
    assert bank.shape == (40, 201)
    # Slaney area normalisation: each triangle has peak 2 / (f_high - f_low); the first band's
    # edges are 0 and ~107.5 Hz (two mel steps of 8000 Hz / 41 on the Slaney scale).
    assert np.all(bank >= 0) and np.all(bank.max(axis=1) > 0)
    assert np.argmax(bank[0]) in (1, 2) and np.argmax(bank[-1]) > 180
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32)
    mel = mel_spectrogram(tone)
    assert mel.shape == (1 + 16000 // 160, 40)
    peak_band = int(np.argmax(mel[50]))
    centres = np.argmax(bank, axis=1) * 40.0  # 40 Hz per FFT bin
    assert abs(centres[peak_band] - 1000) <= 120


def test_resemblyzer_options_are_strict() -> None:
    registry = builtin_registry()
    with pytest.raises(ModelError, match="unknown option"):
        registry.create("voice", "resemblyzer", {"vad": 3})
    with pytest.raises(ModelError, match="vad_mode"):
        registry.create("voice", "resemblyzer", {"vad_mode": 4})


def test_fake_voice_hears_tones_as_identities() -> None:
    model = builtin_registry().voice("fake")
    starts, rows = model.partials(fake_voice_samples(42, 5.0))
    assert len(starts) >= 4
    assert np.allclose(rows @ fake_voice_embedding(42), 1.0, atol=1e-5)
    assert abs(float(fake_voice_embedding(42) @ fake_voice_embedding(43))) < 0.5
    mixed = np.concatenate([fake_voice_samples(5, 3.0), np.zeros(16_000, np.float32), fake_voice_samples(6, 3.0)])
    segments = model.speech(mixed)
    assert [(round(s.start), round(s.end)) for s in segments] == [(0, 3), (4, 7)]


def test_fake_voice_fault_hook() -> None:
    hook = FaultHook(raise_error=True)
    model = builtin_registry().voice("fake", {"faults": hook})
    with pytest.raises(ModelError, match="injected"):
        model.embed([fake_voice_samples(1, 2.0)])
    hook.raise_error = False
    assert model.embed([fake_voice_samples(1, 2.0)]).shape == (1, 64)
    assert hook.calls == 2
