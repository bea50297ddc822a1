"""Audio-only jobs (issue #18): `POST /v1/jobs` takes one audio file (WAV, FLAC, MP3, Ogg, M4A) with
action `check` or `release`, runs the voice check over the whole clip in batches of windows with
progress — outside the request's check deadline —, and on release answers the marked, signed audio
that /v1/release would have answered. Speech: espeak-ng at test time; model: the real Resemblyzer
encoder; one synthetic voice ("A") enrolled without a grant."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.apikeys import Principal
from gateway.audio.encode import encode_audio
from gateway.audio.intake import decode_audio, sniff_audio
from gateway.pipeline.audio_job import BATCH_WINDOWS
from gateway.pipeline.request import CheckRequest
from gateway.pipeline.video import VideoHooks, VideoRun
from tests.audio.test_voice_checks import SLOW_MACHINE, VOICE_POLICY
from tests.jobs.test_cli_client import _run as run_cli
from tests.support.gateway import Keys, app_client, auth, make_settings, verify_audit
from tests.support.speech import SENTENCES, VOICE_A, VOICE_B, speech, speech_wav

pytestmark = pytest.mark.db

JOB_EXTRA = {"jobs_poll_s": "0.05", "jobs_lease_s": "10"}
PAUSE = np.zeros(8_000, np.float32)  # half a second


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Keys, str]]:
    tmp = Path(tmp_path_factory.mktemp("audio-jobs"))
    settings = make_settings(tmp, VOICE_POLICY, **SLOW_MACHINE).with_overrides(extra=JOB_EXTRA)
    with app_client(settings, tmp) as (client, keys):
        sid = client.post("/v1/subjects", json={"display_name": "Voice A"},
                          headers=auth(keys.registrar)).json()["id"]
        files = [("media", ("c.wav", speech_wav(SENTENCES[i], VOICE_A), "audio/wav")) for i in (0, 1)]
        r = client.post(f"/v1/subjects/{sid}/voices", files=files, data={"notice_version": "v1"},
                        headers=auth(keys.registrar))
        assert r.status_code == 201, r.text
        yield client, keys, str(sid)
        verify_audit(client)


@pytest.fixture(scope="module")
def long_clip() -> tuple[np.ndarray, float]:
    """Over a minute: voice B reads every sentence twice (~50 s), then voice A (enrolled) speaks two
    sentences. Returns the 16 kHz samples and the second where voice A starts."""
    parts: list[np.ndarray] = []
    for _ in range(2):
        for text in SENTENCES:
            parts += [speech(text, VOICE_B), PAUSE]
    parts.append(np.zeros(16_000, np.float32))
    a_starts = sum(len(p) for p in parts) / 16_000
    parts += [speech(SENTENCES[3], VOICE_A), PAUSE, speech(SENTENCES[4], VOICE_A)]
    return np.concatenate(parts), a_starts


def _submit(client: TestClient, key: str, data: bytes, **request: Any) -> Any:
    return client.post("/v1/jobs", headers=auth(key),
                       data={"request": json.dumps({"use": "tts", **request})},
                       files=[("media", ("upload.bin", data, "application/octet-stream"))])


def _wait(client: TestClient, key: str, job_id: str, deadline_s: float = 300.0) -> dict[str, Any]:
    end = time.monotonic() + deadline_s
    while True:
        body: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
        if body["state"] in ("done", "failed"):
            return body
        assert time.monotonic() < end, f"job {job_id} still {body['state']} ({body['stage']})"
        time.sleep(0.1)


def test_a_long_clip_is_checked_whole_outside_the_check_deadline(gw: Any, long_clip: Any) -> None:
    client, keys, _ = gw
    samples, a_starts = long_clip
    mp3 = encode_audio(samples, 16_000, "audio/mpeg")
    checker = client.app.state.gateway.pipeline.checker
    saved = checker.check_deadline_s
    checker.check_deadline_s = 0.005  # far below what hearing a minute of speech takes (0.4 s on a quiet machine)
    try:
        # on the request path the same clip runs into the deadline: denied for that, not for the voice
        sync = client.post("/v1/check", headers=auth(keys.generator),
                           data={"request": json.dumps({"use": "tts", "stage": "output"})},
                           files=[("media", ("a.mp3", mp3, "application/octet-stream"))]).json()
        assert [r["rule"] for r in sync["reasons"]] == ["tts.output.check.deadline"], sync["reasons"]

        r = _submit(client, keys.generator, mp3)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        assert r.json()["job"]["state"] in ("queued", "running")
        status = _wait(client, keys.generator, job_id)
    finally:
        checker.check_deadline_s = saved
    assert status["state"] == "done" and status["progress"] == 1.0 and status["stage"] == "done", status
    record = status["decision"]
    assert record["decision"] == "deny", record["reasons"]
    assert {r["rule"] for r in record["reasons"]} == {"tts.output.consent.voice"}, record["reasons"]
    assert record["media"][0]["type"] == "audio/mpeg" and record["media"][0]["duration"] > 60
    voices = record["findings"]["voices"]
    assert len(voices) > BATCH_WINDOWS  # the whole clip was heard, in more than one batch
    denied = [v for v in voices if v["consent"]["state"] == "no_grant"]
    # only voice A's part, at its place in the clip (MP3 adds a few ms of priming)
    assert denied and min(v["start"] for v in denied) >= a_starts - 0.3, (a_starts, voices)
    assert max(v["end"] for v in denied) <= len(samples) / 16_000 + 0.2, voices
    assert all(v["consent"]["state"] == "no_match" for v in voices if v["end"] < a_starts - 0.3), (a_starts, voices)
    assert all(v["matches"] == [] for v in voices)  # the generator's view
    # each reason names its time range
    assert {f"at {v['start']:.2f}-{v['end']:.2f}s" for v in denied} <= {
        r["detail"][r["detail"].index("at "):r["detail"].index("s matches") + 1] for r in record["reasons"]}

    result = client.get(f"/v1/jobs/{job_id}/result", headers=auth(keys.generator))
    assert result.status_code == 403 and result.json()["error"]["code"] == "policy_denied"
    assert not result.headers["content-type"].startswith("audio/")
    assert result.json()["error"]["decision_id"] == status["decision_id"]


def test_progress_is_reported_batch_by_batch(gw: Any, long_clip: Any, tmp_path: Path) -> None:
    client, keys, _ = gw
    samples, _ = long_clip
    src = tmp_path / "clip.wav"
    src.write_bytes(encode_audio(samples, 16_000, "audio/wav"))
    seen: list[tuple[str, float]] = []
    hooks = VideoHooks(progress=lambda stage, fraction: seen.append((stage, fraction)))
    flow = client.app.state.gateway.pipeline.audio
    run = VideoRun(Principal("k", "acme", "generator"), CheckRequest(use="tts", stage="output"), "check",
                   src, tmp_path, decision_id="ab" * 16, request_id="cd" * 16)
    outcome = asyncio.run(flow.run(run, hooks))
    assert outcome.record.decision == "deny" and outcome.output is None
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    # voice activity, then at least two batches of windows, each reported
    assert len({f for s, f in seen if s == "voices"}) >= 4
    assert [s for s, _ in seen][-1] == "done"


def test_a_granted_voice_is_released_marked_signed_and_verifiable(gw: Any) -> None:
    client, keys, sid = gw
    grant = client.post(f"/v1/subjects/{sid}/grants", json={"grantee_tenant": "acme", "uses": ["tts"]},
                        headers=auth(keys.registrar)).json()
    try:
        clip = np.concatenate([speech(SENTENCES[2], VOICE_A), PAUSE, speech(SENTENCES[4], VOICE_A)])
        r = _submit(client, keys.generator, encode_audio(clip, 16_000, "audio/mpeg"))
        assert r.status_code == 202, r.text
        status = _wait(client, keys.generator, r.json()["job_id"])
        assert status["state"] == "done" and status["decision"]["decision"] == "allow", status
        assert {v["consent"]["state"] for v in status["decision"]["findings"]["voices"]} == {"granted"}
        result = client.get(f"/v1/jobs/{status['job_id']}/result", headers=auth(keys.generator))
        assert result.status_code == 200
        assert result.headers["content-type"] == "audio/mpeg" and sniff_audio(result.content) == "audio/mpeg"
        assert result.headers["content-disposition"].endswith('.mp3"')
        assert result.headers["x-decision-id"] == status["decision_id"]
        assert abs(decode_audio(result.content).duration_s - len(clip) / 16_000) < 0.2
        found = client.post("/v1/provenance/verify", headers=auth(keys.generator),
                            files=[("media", ("x.bin", result.content, "application/octet-stream"))]).json()
        assert found["c2pa"]["state"] in ("Trusted", "Valid")
        assert found["watermark"]["found"] is True and found["watermark"]["method"] == "audio-qim"
        assert [d["decision_id"] for d in found["decisions"]] == [status["decision_id"]]
        assert found["decisions"][0]["decision"] == "allow" and found["decisions"][0]["audit_index"] is not None
    finally:
        assert client.delete(f"/v1/grants/{grant['id']}", headers=auth(keys.registrar)).status_code == 200


def test_ogg_comes_back_as_flac_and_a_check_job_answers_the_record(gw: Any) -> None:
    client, keys, _ = gw
    from scipy.signal import resample_poly

    clip = resample_poly(speech(SENTENCES[1], VOICE_B), 3, 1).astype(np.float32)  # Opus wants 48 kHz
    ogg = encode_audio(clip, 48_000, "audio/ogg")
    status = _wait(client, keys.generator, _submit(client, keys.generator, ogg).json()["job_id"])
    assert status["decision"]["decision"] == "allow", status
    result = client.get(f"/v1/jobs/{status['job_id']}/result", headers=auth(keys.generator))
    assert result.status_code == 200 and result.headers["content-type"] == "audio/flac"
    assert sniff_audio(result.content) == "audio/flac" and result.headers["content-disposition"].endswith('.flac"')

    check = _wait(client, keys.generator,
                  _submit(client, keys.generator, ogg, action="check", stage="output").json()["job_id"])
    answer = client.get(f"/v1/jobs/{check['job_id']}/result", headers=auth(keys.generator))
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json()["decision"] == "allow" and answer.json()["media"][0]["type"] == "audio/ogg"
    assert answer.json()["outputs"] == []  # a check releases nothing


def test_corrupt_audio_is_a_clear_error_not_a_500(gw: Any) -> None:
    client, keys, _ = gw
    good = encode_audio(speech(SENTENCES[0], VOICE_B), 16_000, "audio/mp4")
    # broken headers: refused before a job is made
    r = _submit(client, keys.generator, good[: len(good) // 3])
    assert r.status_code == 400 and r.json()["error"]["code"] == "corrupt_audio", r.text
    r = _submit(client, keys.generator, b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(64))
    assert r.status_code == 400 and r.json()["error"]["code"] == "corrupt_audio", r.text
    r = _submit(client, keys.generator, bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)))
    assert r.status_code == 415, r.text
    # headers and the first second decode, the rest is garbage: the job fails with the same code
    mp3 = bytearray(encode_audio(speech(SENTENCES[1], VOICE_B), 16_000, "audio/mpeg"))
    start = int(len(mp3) * 0.3)
    mp3[start:] = np.random.default_rng(0).integers(0, 256, len(mp3) - start, dtype=np.uint8).tobytes()
    r = _submit(client, keys.generator, bytes(mp3))
    assert r.status_code == 202, r.text
    status = _wait(client, keys.generator, r.json()["job_id"])
    assert status["state"] == "failed" and status["decision"] is None
    assert status["error"]["code"] == "corrupt_audio" and "decode" in status["error"]["message"]
    result = client.get(f"/v1/jobs/{status['job_id']}/result", headers=auth(keys.generator))
    assert result.status_code == 409 and result.json()["error"]["code"] == "job_failed"


def test_the_cli_releases_audio_through_a_job(gw: Any, tmp_path: Path) -> None:
    client, keys, _ = gw
    wav = tmp_path / "speech.wav"
    wav.write_bytes(speech_wav(SENTENCES[3], VOICE_B))
    out = run_cli(client, keys.generator, "release", str(wav), "--use", "tts")
    assert out.exit_code == 0, out.output
    released = tmp_path / "speech.released.wav"
    assert out.stdout.strip() == str(released) and sniff_audio(released.read_bytes()) == "audio/wav"
    verified = run_cli(client, keys.generator, "provenance", "verify", str(released))
    assert verified.exit_code == 0, verified.output
    # the enrolled voice without a grant: exit 1, nothing written
    enrolled = tmp_path / "a.wav"
    enrolled.write_bytes(speech_wav(SENTENCES[2], VOICE_A))
    denied = run_cli(client, keys.generator, "release", str(enrolled), "--use", "tts")
    assert denied.exit_code == 1 and "deny" in denied.stderr
    assert not (tmp_path / "a.released.wav").exists()
