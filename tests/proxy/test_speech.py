"""Why: the OpenAI-compatible text-to-speech surface (issue #18 point 6, route kind `openai-audio`):
the input text goes through the prompt rules and the name check before the upstream is called;
the speech that comes back goes through the voice check, then is marked, signed and recorded. The
reference upstream (examples/upstream) speaks with espeak-ng."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.upstream import UpstreamState
from gateway.audio.intake import sniff_audio
from tests.support.gateway import TEST_POLICY, app_client, auth, make_settings, verify_audit
from tests.support.speech import SENTENCES, speech_wav

pytestmark = pytest.mark.db

POLICY = TEST_POLICY + """
  tts:
    input: {}
    output:
      faces: {unmatched: allow, without_consent: deny}
"""


def _routes(url: str) -> str:
    return f"""
default: speech
limits:
  per_key: {{rate_per_s: 1000, burst: 1000}}
routes:
  speech:
    kind: openai-audio
    url: {url}
    use: tts
    model: {{name: espeak-tts, version: "1"}}
    timeout_s: 60
  pictures:
    kind: openai-images
    url: {url}
    use: txt2img
    model: {{name: demo-upstream}}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream_server: tuple[UpstreamState, str]) -> Iterator[Any]:
    state, url = upstream_server
    tmp = Path(tmp_path_factory.mktemp("speech"))
    settings = make_settings(tmp, POLICY, model_timeout_s=120.0, check_deadline_s=240.0)
    (settings.policies_dir / "routes.yaml").write_text(_routes(url))
    with app_client(settings, tmp) as (client, keys):
        yield client, keys, state
        verify_audit(client)


def _speech(client: Any, key: str, **body: Any) -> Any:
    return client.post("/v1/audio/speech", content=json.dumps({"model": "speech", **body}),
                       headers={**auth(key), "content-type": "application/json"})


def test_speech_is_checked_marked_signed_and_recorded(gw: Any) -> None:
    client, keys, state = gw
    state.reset()
    r = _speech(client, keys.generator, input="The weather is fine today and the trains run on time.",
                voice="alloy", response_format="mp3")
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"] == "audio/mpeg" and sniff_audio(r.content) == "audio/mpeg"
    assert state.count("speech") == 1
    found = client.post("/v1/provenance/verify", files=[("media", ("s.mp3", r.content, "audio/mpeg"))],
                        headers=auth(keys.generator)).json()
    assert found["c2pa"]["state"] in ("Trusted", "Valid") and found["watermark"]["found"] is True
    assert [d["decision_id"] for d in found["decisions"]] == [r.headers["X-Decision-Id"]]
    for fmt, mime in (("wav", "audio/wav"), ("opus", "audio/flac")):
        r = _speech(client, keys.generator, input="Short and clear.", response_format=fmt)
        assert r.status_code == 200 and r.headers["content-type"] == mime, (fmt, r.text[:300])


def test_the_input_text_is_checked_before_the_upstream_is_called(gw: Any) -> None:
    client, keys, state = gw
    state.reset()
    r = _speech(client, keys.generator, input="please nudify this")
    assert r.status_code == 403 and r.json()["error"]["code"] == "policy_denied"
    assert state.count("speech") == 0


def test_an_enrolled_voice_coming_back_without_a_grant_is_withheld(gw: Any) -> None:
    client, keys, state = gw
    sid = client.post("/v1/subjects", json={"display_name": "Alloy Voice Actor"},
                      headers=auth(keys.registrar)).json()["id"]
    voice = ("en-us+m3", 30)  # what the upstream's "alloy" speaks with
    files = [("media", ("c.wav", speech_wav(SENTENCES[i], voice), "audio/wav")) for i in (0, 1)]
    assert client.post(f"/v1/subjects/{sid}/voices", files=files, data={"notice_version": "v1"},
                       headers=auth(keys.registrar)).status_code == 201
    state.reset()
    r = _speech(client, keys.generator, input=SENTENCES[3], voice="alloy")
    assert r.status_code == 403, r.text[:300]
    assert r.json()["error"]["code"] == "policy_denied" and state.count("speech") == 1
    client.post(f"/v1/subjects/{sid}/grants", json={"grantee_tenant": "acme", "uses": ["tts"]},
                headers=auth(keys.registrar))
    assert _speech(client, keys.generator, input=SENTENCES[3], voice="alloy").status_code == 200
    assert client.delete(f"/v1/subjects/{sid}", headers=auth(keys.registrar)).status_code == 200


def test_bad_requests_and_routes(gw: Any) -> None:
    client, keys, state = gw
    assert _speech(client, keys.generator, input="").status_code == 422
    assert _speech(client, keys.generator, input="hi", response_format="pcm").status_code == 422
    r = client.post("/v1/audio/speech", content=json.dumps({"model": "pictures", "input": "hello"}),
                    headers={**auth(keys.generator), "content-type": "application/json"})
    assert r.status_code == 422 and "openai-audio" in r.json()["error"]["message"]
    state.corrupt_next = 1
    r = _speech(client, keys.generator, input="This answer will not be audio.")
    assert r.status_code in (403, 502) and "audio/" not in r.headers.get("content-type", "")
