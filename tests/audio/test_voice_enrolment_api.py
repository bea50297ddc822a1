"""Why: a registrar enrols a voice over HTTP from audio files; the gateway must hear one person's
speech in every clip, say why when it does not, and never hand templates back (issue #18 points 3
and 7). Speech is espeak-ng's, made at test time; the model is the real Resemblyzer encoder."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.gateway import app_client, auth, make_settings, png, verify_audit
from tests.support.speech import SENTENCES, VOICE_A, VOICE_B, speech_wav

pytestmark = pytest.mark.db
# the real encoder on a shared 2-core machine: generous timeouts (timing lives in bench/voice.py)
SLOW_MACHINE = {"model_timeout_s": 120.0, "check_deadline_s": 240.0}


def _wav_join(*wavs: bytes) -> bytes:
    frames, rate = [], 22050
    for data in wavs:
        with wave.open(io.BytesIO(data)) as src:
            rate = src.getframerate()
            frames.append(src.readframes(src.getnframes()))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as dst:
        dst.setnchannels(1)
        dst.setsampwidth(2)
        dst.setframerate(rate)
        dst.writeframes(b"".join(frames))
    return buf.getvalue()


def _silence(seconds: float) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as dst:
        dst.setnchannels(1)
        dst.setsampwidth(2)
        dst.setframerate(16000)
        dst.writeframes(b"\0\0" * int(16000 * seconds))
    return buf.getvalue()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = Path(tmp_path_factory.mktemp("voice-api"))
    with app_client(make_settings(tmp, **SLOW_MACHINE), tmp) as (client, keys):
        yield client, keys
        verify_audit(client)


def _subject(client: Any, keys: Any, name: str = "Voice Actor") -> str:
    r = client.post("/v1/subjects", json={"display_name": name}, headers=auth(keys.registrar))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _enrol(client: Any, keys: Any, sid: str, *clips: bytes, notice: str | None = "voice-notice-1") -> Any:
    files = [("media", (f"clip{i}.wav", data, "application/octet-stream")) for i, data in enumerate(clips)]
    data = {"notice_version": notice} if notice else {}
    return client.post(f"/v1/subjects/{sid}/voices", files=files, data=data, headers=auth(keys.registrar))


def test_enrol_a_voice_and_erase_it(gw: Any) -> None:
    client, keys = gw
    sid = _subject(client, keys)
    r = _enrol(client, keys, sid, speech_wav(SENTENCES[0], VOICE_A), speech_wav(SENTENCES[1], VOICE_A))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["templates"] == {"resemblyzer": 2} and body["clips"] == 2 and body["clips_kept"] is True
    assert all(s >= 3.0 for s in body["speech_seconds"])
    assert "embedding" not in r.text and "template_ct" not in r.text
    shown = client.get(f"/v1/subjects/{sid}", headers=auth(keys.registrar)).json()
    assert shown["voice_models"] == ["resemblyzer"] and shown["voice_template_count"] == 2
    erased = client.delete(f"/v1/subjects/{sid}", headers=auth(keys.registrar))
    assert erased.status_code == 200, erased.text
    assert erased.json()["counts"]["voice_templates"] == 2 and erased.json()["counts"]["voice_clips"] == 2


@pytest.mark.parametrize(
    ("clips", "reason"),
    [
        (lambda: [_silence(4.0)], "no_speech"),
        (lambda: [speech_wav("Hello there.", VOICE_A)], "too_little_speech"),
        (lambda: [_wav_join(speech_wav(SENTENCES[2], VOICE_A), speech_wav(SENTENCES[3], VOICE_B))],
         "multiple_speakers"),
        (lambda: [speech_wav(SENTENCES[2], VOICE_A), speech_wav(SENTENCES[3], VOICE_B)], "multiple_speakers"),
        (lambda: [_silence(4.0)] * 11, "clip_count"),
    ],
)
def test_clips_that_cannot_show_one_voice_are_422_with_a_reason(gw: Any, clips: Any, reason: str) -> None:
    client, keys = gw
    sid = _subject(client, keys)
    r = _enrol(client, keys, sid, *clips())
    assert r.status_code == 422, r.text
    assert r.json()["error"]["reason"] == reason
    assert client.get(f"/v1/subjects/{sid}", headers=auth(keys.registrar)).json()["voice_template_count"] == 0


def test_bad_uploads_and_roles(gw: Any) -> None:
    client, keys = gw
    sid = _subject(client, keys)
    clip = speech_wav(SENTENCES[0], VOICE_A)
    assert _enrol(client, keys, sid, png(np.zeros((8, 8, 3), np.uint8))).status_code == 415
    assert _enrol(client, keys, sid, b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 40).status_code == 400
    r = _enrol(client, keys, sid, clip, notice=None)
    assert r.status_code == 422 and "notice_version" in r.json()["error"]["message"]
    assert _enrol(client, keys, "no-such-subject", clip).status_code == 404
    files = [("media", ("a.wav", clip, "audio/wav"))]
    r = client.post(f"/v1/subjects/{sid}/voices", files=files, data={"notice_version": "n"},
                    headers=auth(keys.generator))
    assert r.status_code == 403
