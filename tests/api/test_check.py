"""/v1/check through the HTTP app with the real models on the real images that ship in packages."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from tests.api.conftest import Keys, auth, check, jpeg, png, solid


def test_real_portraits_and_coffee_allow_with_faces(client: TestClient, keys: Keys, astronaut: np.ndarray,
                                                     grace_hopper: np.ndarray, coffee: np.ndarray) -> None:
    for image, faces in ((astronaut, 1), (grace_hopper, 1), (coffee, 0)):
        resp = check(client, keys.generator, {"stage": "input", "use": "img2img"}, jpeg(image))
        assert resp.status_code == 200, resp.text
        record = resp.json()
        assert record["decision"] == "allow", record["reasons"]
        assert len(record["findings"]["faces"]) == faces
        for face in record["findings"]["faces"]:
            assert face["consent"]["state"] == "no_match"
            x0, y0, x1, y1 = face["bbox"]
            assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
            assert face["det_score"] > 0
        models = {f["model"]: f for f in record["findings"]["nsfw"]}
        assert set(models) == {"opennsfw", "nudenet", "fake"}
        assert models["opennsfw"]["scores"]["nsfw"] < 0.2
        assert all(len(f["model_version"]) == 16 for f in record["findings"]["nsfw"] if f["model"] != "fake")
        assert record["media"][0]["sha256"] and record["media"][0]["type"] == "image/jpeg"
        assert record["media"][0]["width"] == image.shape[1]
        assert record["policy"]["name"] == "test" and len(record["policy"]["digest"]) == 64
        assert isinstance(record["audit"]["index"], int) and len(record["audit"]["leaf_hash"]) == 64


def test_fake_drives_deny_and_review(client: TestClient, keys: Keys) -> None:
    deny = check(client, keys.generator, {"stage": "output", "use": "txt2img"}, png(solid((255, 0, 0)))).json()
    assert deny["decision"] == "deny"
    assert any(r["rule"] == "txt2img.output.nsfw.fake.unsafe" for r in deny["reasons"])
    review = check(client, keys.generator, {"stage": "output", "use": "txt2img"}, png(solid((255, 255, 0)))).json()
    assert review["decision"] == "review"
    assert any(r["rule"] == "txt2img.output.nsfw.fake.suggestive" and r["outcome"] == "review"
               for r in review["reasons"])


def test_strictest_of_several_media_wins(client: TestClient, keys: Keys, coffee: np.ndarray) -> None:
    resp = check(client, keys.generator, {"stage": "output", "use": "txt2img"},
                 png(coffee), png(solid((255, 255, 0))), png(solid((255, 0, 0))))
    record = resp.json()
    assert record["decision"] == "deny"
    assert len(record["media"]) == 3
    fired = {(r["rule"], r["detail"].split("(")[-1]) for r in record["reasons"]}
    assert any("media 2" in d for _, d in fired)


def test_prompt_rule_and_unknown_use(client: TestClient, keys: Keys) -> None:
    assert check(client, keys.generator, {"stage": "input", "use": "txt2img", "prompt": "Nudify her"}
                 ).json()["decision"] == "deny"
    unknown = check(client, keys.generator, {"stage": "input", "use": "voice_clone"}).json()
    assert unknown["decision"] == "deny" and unknown["reasons"][0]["rule"] == "use.unknown"


def test_face_swap_with_unknown_face_is_denied(client: TestClient, keys: Keys, astronaut: np.ndarray) -> None:
    record = check(client, keys.generator, {"stage": "input", "use": "face_swap"}, jpeg(astronaut)).json()
    assert record["decision"] == "deny"
    assert any(r["rule"] == "face_swap.input.faces.unmatched" for r in record["reasons"])


def test_prompt_text_not_in_audit_by_default(client: TestClient, keys: Keys) -> None:
    record = check(client, keys.generator, {"stage": "input", "use": "txt2img", "prompt": "a red bicycle"}).json()
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    stored = gw.audit.entry(record["audit"]["index"]).record
    assert "a red bicycle" not in str(stored)
    assert stored["decision_id"] == record["decision_id"]


def test_one_audit_entry_per_decision(client: TestClient, keys: Keys, coffee: np.ndarray) -> None:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    before = gw.audit.head().tree_size
    indexes = [check(client, keys.generator, {"stage": "input", "use": "img2img"}, png(coffee)).json()["audit"]["index"]
               for _ in range(3)]
    assert gw.audit.head().tree_size == before + 3
    assert indexes == list(range(before, before + 3))


def test_bad_media_gets_clear_4xx(client: TestClient, keys: Keys, coffee: np.ndarray) -> None:
    cases = [
        (b"", 400), (jpeg(coffee)[:500], 400), (b"plain text pretending to be a jpeg", 415),
        (b"GIF89a" + b"\0" * 100, 415),
    ]
    for data, status in cases:
        resp = check(client, keys.generator, {"stage": "input", "use": "img2img"}, data)
        assert resp.status_code == status, (status, resp.text)
        assert resp.json()["error"]["message"]


def test_bad_request_part(client: TestClient, keys: Keys) -> None:
    resp = client.post("/v1/check", headers=auth(keys.generator), data={"request": "{not json"})
    assert resp.status_code == 400
    resp = client.post("/v1/check", headers=auth(keys.generator), data={"request": '{"stage": "sideways", "use": "x"}'})
    assert resp.status_code == 422 and "stage" in resp.json()["error"]["message"]
    resp = client.post("/v1/check", headers=auth(keys.generator))
    assert resp.status_code == 422
