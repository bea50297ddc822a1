"""Why: audio leaves the gateway only through a decision, marked and signed (issue #18 point 5):
it comes back in its own type (Ogg as FLAC), C2PA-signed, carrying the 72-bit audio mark, and
/v1/provenance/verify takes the file — or an MP3 re-encoding of it at another volume, with the
manifest gone — back to the decision. An enrolled voice without a grant never leaves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.audio.encode import encode_audio
from gateway.audio.intake import decode_audio, sniff_audio
from tests.audio.test_voice_checks import VOICE_POLICY
from tests.support.gateway import app_client, auth, make_settings, verify_audit
from tests.support.speech import SENTENCES, VOICE_A, VOICE_B, speech, speech_wav

pytestmark = pytest.mark.db
# the real encoder on a shared 2-core machine: generous timeouts (timing lives in bench/voice.py)
SLOW_MACHINE = {"model_timeout_s": 120.0, "check_deadline_s": 240.0}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = Path(tmp_path_factory.mktemp("audio-release"))
    with app_client(make_settings(tmp, VOICE_POLICY, **SLOW_MACHINE), tmp) as (client, keys):
        yield client, keys
        verify_audit(client)


def _release(client: Any, key: str, data: bytes, use: str = "tts") -> Any:
    return client.post("/v1/release", files=[("media", ("a.bin", data, "application/octet-stream"))],
                       data={"request": json.dumps({"use": use})}, headers=auth(key))


def _verify(client: Any, key: str, data: bytes) -> dict[str, Any]:
    r = client.post("/v1/provenance/verify", files=[("media", ("x.bin", data, "application/octet-stream"))],
                    headers=auth(key))
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.parametrize(("mime", "back"), [("audio/wav", "audio/wav"), ("audio/mpeg", "audio/mpeg"),
                                            ("audio/flac", "audio/flac"), ("audio/mp4", "audio/mp4"),
                                            ("audio/ogg", "audio/flac")])
def test_released_audio_is_marked_signed_and_verifiable(gw: Any, mime: str, back: str) -> None:
    client, keys = gw
    samples = np.concatenate([speech(SENTENCES[1], VOICE_B), speech(SENTENCES[2], VOICE_B)])
    rate = 48_000 if mime == "audio/ogg" else 16_000
    if rate != 16_000:
        from scipy.signal import resample_poly

        samples = resample_poly(samples, 3, 1).astype(np.float32)
    r = _release(client, keys.generator, encode_audio(samples, rate, mime))
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"] == back and sniff_audio(r.content) == back
    decision_id = r.headers["X-Decision-Id"]
    found = _verify(client, keys.generator, r.content)
    assert found["c2pa"]["state"] in ("Trusted", "Valid")
    assert found["watermark"]["found"] is True and found["watermark"]["method"] == "audio-qim"
    assert [d["decision_id"] for d in found["decisions"]] == [decision_id]
    assert found["watermark"]["decision_ids"] == [decision_id]
    assert found["decisions"][0]["decision"] == "allow"
    assert abs(decode_audio(r.content).duration_s - len(samples) / rate) < 0.2  # AAC adds priming/padding


def test_a_reencoded_quieter_copy_still_leads_back(gw: Any) -> None:
    client, keys = gw
    r = _release(client, keys.generator, speech_wav(SENTENCES[4], VOICE_B))
    assert r.status_code == 200, r.text[:500]
    decision_id = r.headers["X-Decision-Id"]
    copy = decode_audio(r.content).samples * np.float32(0.5)  # -6 dB, and the manifest is gone
    mp3 = encode_audio(copy, 16_000, "audio/mpeg", bitrate=128_000)
    found = _verify(client, keys.generator, mp3)
    assert found["c2pa"]["state"] not in ("Trusted", "Valid")
    assert found["watermark"]["found"] is True
    assert [d["decision_id"] for d in found["decisions"]] == [decision_id]
    record = client.get(f"/v1/audit/receipts/{decision_id}", headers=auth(keys.generator))
    assert record.status_code == 200


def test_an_enrolled_voice_without_a_grant_never_leaves(gw: Any) -> None:
    client, keys = gw
    sid = client.post("/v1/subjects", json={"display_name": "Voice A"}, headers=auth(keys.registrar)).json()["id"]
    files = [("media", ("c.wav", speech_wav(SENTENCES[i], VOICE_A), "audio/wav")) for i in (0, 1)]
    assert client.post(f"/v1/subjects/{sid}/voices", files=files, data={"notice_version": "v1"},
                       headers=auth(keys.registrar)).status_code == 201
    r = _release(client, keys.generator, speech_wav(SENTENCES[3], VOICE_A))
    assert r.status_code == 403 and r.json()["error"]["code"] == "policy_denied"
    assert r.json()["decision"]["findings"]["voices"]
    assert not r.headers.get("content-type", "").startswith("audio/")


def test_unmarked_audio_verifies_to_nothing(gw: Any) -> None:
    client, keys = gw
    found = _verify(client, keys.generator, speech_wav(SENTENCES[0], VOICE_B))
    assert found["watermark"]["found"] is False and found["decisions"] == []
