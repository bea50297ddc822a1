"""Issue #15.2 (second half): an output of a use whose consent applies to its inputs (face_swap, img2img)
is bound to its input decision. The output check or release must name it (`input_decision_id`); the
gateway finds it in the audit log (this tenant's only), checks it was an allowed *input* decision made
within the window, makes the output inherit its use (another declared use: 409) and the identities it
found (their grants are read again: a face swap of the enrolled astronaut needs her grant even when the
render no longer looks like her). Refusals append nothing. Before the fix: a face_swap render of a
granted reference was released whatever happened to the grant, as any use the client declared, and a
face_swap output check without an input decision was decided (allow: "no rule fired" on the render)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.apikeys import Principal
from gateway.errors import NotReady
from gateway.pipeline import CheckRequest
from tests.enforce.test_rules_cannot_stall import make
from tests.support.gateway import Keys, app_client, auth, jpeg, make_settings, png, verify_audit

pytestmark = pytest.mark.db  # the lookup reads the audit log's tables: run on PostgreSQL too

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Iterator[tuple[TestClient, Keys, str]]:
    tmp = tmp_path_factory.mktemp("gw")
    shipped = (REPO / "policies" / "default.yaml").read_text()
    with app_client(make_settings(tmp, shipped), tmp) as (client, keys):
        sid = client.post("/v1/subjects", headers=auth(keys.registrar), json={"display_name": "E C"}).json()["id"]
        made = client.post(f"/v1/subjects/{sid}/faces", headers=auth(keys.registrar), data={"notice_version": "n1"},
                           files=[("media", ("a.png", png(astronaut), "image/png"))])
        assert made.status_code == 201, made.text
        yield client, keys, sid
        verify_audit(client)


def call(client: TestClient, path: str, key: str, request: dict[str, Any], image: bytes) -> tuple[int, dict[str, Any]]:
    resp = client.post(path, headers=auth(key), data={"request": json.dumps(request)},
                       files=[("media", ("m.jpg", image, "image/jpeg"))])
    if "json" in resp.headers.get("content-type", ""):
        return resp.status_code, dict(resp.json())
    return resp.status_code, {"decision_id": resp.headers.get("x-decision-id"), "released": True}


def tree_size(client: TestClient) -> int:
    return int(client.app.state.gateway.audit.head().tree_size)  # type: ignore[attr-defined]


def grant(client: TestClient, keys: Keys, sid: str, uses: list[str]) -> str:
    made = client.post(f"/v1/subjects/{sid}/grants", headers=auth(keys.registrar),
                       json={"grantee_tenant": "acme", "uses": uses})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def stored(client: TestClient, index: int) -> dict[str, Any]:
    return dict(client.app.state.gateway.audit.entry(index).record)  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/v1/check", "/v1/release", "/v1/jobs"])
@pytest.mark.parametrize("use", ["face_swap", "img2img"])
def test_an_output_of_a_bound_use_must_name_its_input(gateway: tuple[TestClient, Keys, str], coffee: np.ndarray,
                                                      path: str, use: str) -> None:
    client, keys, _ = gateway
    before = tree_size(client)
    status, body = call(client, path, keys.generator, {"stage": "output", "use": use}, jpeg(coffee))
    assert status == 400, body
    assert body["error"]["code"] == "input_decision_required" and "`input_decision_id`" in body["error"]["message"]
    assert tree_size(client) == before  # refused, not decided


def test_the_issues_face_swap_is_bound_to_its_input(gateway: tuple[TestClient, Keys, str], astronaut: np.ndarray,
                                                    grace_hopper: np.ndarray) -> None:
    client, keys, sid = gateway
    swap = grant(client, keys, sid, ["face_swap"])
    grant(client, keys, sid, ["txt2img"])  # the issue's client also holds a txt2img grant
    status, source = call(client, "/v1/check", keys.generator, {"stage": "input", "use": "face_swap"},
                          jpeg(astronaut))
    assert status == 200 and source["decision"] == "allow", source["reasons"]
    input_id = source["decision_id"]

    # the render (here: a face that no longer matches her) is released as face_swap, under her grant
    status, out = call(client, "/v1/check", keys.generator,
                       {"stage": "output", "use": "face_swap", "input_decision_id": input_id}, jpeg(grace_hopper))
    assert status == 200 and out["decision"] == "allow", out["reasons"]
    assert out["input_decision_id"] == input_id and swap in out["grant_ids"]
    assert out["findings"]["inherited"] == [{"subject_id": sid, "source": "face",
                                             "consent": {"grant_id": swap, "state": "granted"}}]
    record = stored(client, out["audit"]["index"])
    assert record["input_decision_id"] == input_id  # in the signed record
    assert client.get(f"/v1/subjects/{sid}/uses", headers=auth(keys.registrar)).json()["uses"][-1][
        "decision_id"] == out["decision_id"]  # the subject's uses list the output too

    # the same client declaring txt2img for that render: refused, the use is the input's
    before = tree_size(client)
    for path in ("/v1/check", "/v1/release"):
        status, body = call(client, path, keys.generator,
                            {"stage": "output", "use": "txt2img", "input_decision_id": input_id}, jpeg(astronaut))
        assert status == 409 and body["error"]["code"] == "input_decision_mismatch", body
        assert "'face_swap'" in body["error"]["message"]
    assert tree_size(client) == before

    # her face_swap grant revoked after the input check: the output needs it, even though it does not match her
    assert client.delete(f"/v1/grants/{swap}", headers=auth(keys.registrar)).status_code == 200
    status, body = call(client, "/v1/release", keys.generator,
                        {"use": "face_swap", "input_decision_id": input_id}, jpeg(grace_hopper))
    assert status == 403 and body["error"]["code"] == "policy_denied", body
    rules = [r["rule"] for r in body["decision"]["reasons"]]
    assert rules == ["face_swap.output.consent.inherited"], rules
    assert body["decision"]["findings"]["inherited"] == [{"subject_id": None, "source": "face",
                                                          "consent": {"grant_id": None, "state": "revoked"}}]
    assert body["decision"]["findings"]["faces"][0]["consent"]["state"] == "no_match"


def test_bad_input_decisions_are_refused(gateway: tuple[TestClient, Keys, str], astronaut: np.ndarray,
                                         coffee: np.ndarray, chelsea: np.ndarray) -> None:
    client, keys, _ = gateway
    status, denied = call(client, "/v1/check", keys.generator, {"stage": "input", "use": "face_swap"}, jpeg(coffee))
    assert status == 200 and denied["decision"] == "deny"  # no face in the reference
    status, allowed = call(client, "/v1/check", keys.generator, {"stage": "input", "use": "img2img"}, jpeg(chelsea))
    assert status == 200 and allowed["decision"] == "allow"
    status, output = call(client, "/v1/check", keys.generator,
                          {"stage": "output", "use": "img2img", "input_decision_id": allowed["decision_id"]},
                          jpeg(chelsea))
    assert status == 200 and output["decision"] == "allow" and output["input_decision_id"] == allowed["decision_id"]
    assert "inherited" not in output["findings"]  # a reference without enrolled subjects passes nothing on

    before = tree_size(client)
    cases = [
        (keys.generator, {"use": "face_swap", "input_decision_id": denied["decision_id"]}, 403,
         "input_decision_denied"),
        (keys.generator, {"use": "img2img", "input_decision_id": "0" * 32}, 404, "input_decision_not_found"),
        # another tenant's input decision is answered like an unknown one
        (keys.other_generator, {"use": "img2img", "input_decision_id": allowed["decision_id"]}, 404,
         "input_decision_not_found"),
        (keys.generator, {"use": "img2img", "input_decision_id": output["decision_id"]}, 409,
         "input_decision_mismatch"),  # an output decision is no input decision
        (keys.generator, {"use": "face_swap", "input_decision_id": allowed["decision_id"]}, 409,
         "input_decision_mismatch"),  # img2img input, face_swap output
    ]
    for key, request, code, error in cases:
        for path in ("/v1/check", "/v1/release"):
            status, body = call(client, path, key, {"stage": "output", **request}, jpeg(chelsea))
            assert (status, body["error"]["code"]) == (code, error), (path, request, body)
    status, body = call(client, "/v1/check", keys.generator,
                        {"stage": "input", "use": "img2img", "input_decision_id": allowed["decision_id"]},
                        jpeg(chelsea))
    assert status == 400 and body["error"]["code"] == "input_decision_mismatch"
    assert tree_size(client) == before

    gw = client.app.state.gateway  # type: ignore[attr-defined]
    real = gw.pipeline.clock
    gw.pipeline.clock = lambda: datetime.now(UTC) + timedelta(seconds=gw.settings.input_decision_max_age_s + 60)
    try:
        status, body = call(client, "/v1/release", keys.generator,
                            {"use": "img2img", "input_decision_id": allowed["decision_id"]}, jpeg(chelsea))
    finally:
        gw.pipeline.clock = real
    assert status == 409 and body["error"]["code"] == "input_decision_expired", body
    assert tree_size(client) == before


def test_a_lookup_that_fails_refuses(tmp_path: Path) -> None:
    """Memory ports: the audit log cannot answer → 503 `input_decision_unavailable`, nothing decided."""
    pipeline = make(tmp_path)

    class Down:
        def find_decision(self, decision_id: str, tenant: str) -> None:
            raise ConnectionError("database down")

    pipeline.ports = type(pipeline.ports)(**{**pipeline.ports.__dict__, "decisions": Down()})
    who = Principal("k", "acme", "generator")
    with pytest.raises(NotReady) as err:
        asyncio.run(pipeline.check(who, CheckRequest(stage="output", use="txt2img", input_decision_id="ab" * 16), []))
    assert err.value.code == "input_decision_unavailable"
    assert pipeline.ports.audit.records == []  # type: ignore[attr-defined]


def test_the_cli_and_the_client_name_the_input(gateway: tuple[TestClient, Keys, str], chelsea: np.ndarray,
                                                tmp_path: Path) -> None:
    from consentgate_client import ConsentgateClient, ConsentgateError
    from tests.client.test_client_e2e import Via
    from tests.jobs.test_cli_client import _run

    client, keys, _ = gateway
    picture = tmp_path / "chelsea.jpg"
    picture.write_bytes(jpeg(chelsea))
    checked = _run(client, keys.generator, "check", str(picture), "--use", "img2img", "--stage", "input")
    assert checked.exit_code == 0, checked.output
    input_id = json.loads(checked.stdout)["decision_id"]
    refused = _run(client, keys.generator, "release", str(picture), "--use", "img2img")
    assert refused.exit_code == 2 and "input_decision_id" in refused.output
    released = _run(client, keys.generator, "release", str(picture), "--use", "img2img", "--input-decision", input_id,
                    "--out", str(tmp_path / "out.jpg"))
    assert released.exit_code == 0, released.output
    output_id = stored(client, tree_size(client) - 1)["input_decision_id"]
    assert output_id == input_id

    with ConsentgateClient("http://testserver", keys.generator, transport=Via(client)) as cg:
        decision = cg.check([jpeg(chelsea)], use="img2img", stage="output", input_decision_id=input_id)
        assert decision.allowed and decision.input_decision_id == input_id
        assert cg.release(jpeg(chelsea), use="img2img", input_decision_id=input_id).decision == "allow"
        with pytest.raises(ConsentgateError) as err:
            cg.release(jpeg(chelsea), use="img2img")
        assert err.value.code == "input_decision_required"


@pytest.fixture(scope="module")
def voice_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Keys]]:
    from tests.audio.test_voice_checks import SLOW_MACHINE, VOICE_POLICY

    tmp = tmp_path_factory.mktemp("voice")
    with app_client(make_settings(tmp, VOICE_POLICY, **SLOW_MACHINE), tmp) as made:
        yield made
        verify_audit(made[0])


def test_a_cloned_voice_needs_the_reference_speakers_grant(voice_gw: tuple[TestClient, Keys]) -> None:
    """voice_clone: the reference is an enrolled, consenting voice (input); the clone may not match her at
    the voice threshold (here: another voice altogether), yet it needs her voice_clone grant at output time."""
    from tests.audio.test_voice_checks import _enrolled
    from tests.support.speech import SENTENCES, VOICE_A, VOICE_B, speech_wav

    client, keys = voice_gw
    sid = _enrolled(client, keys, VOICE_A, "Voice To Clone")
    grant_id = grant(client, keys, sid, ["voice_clone"])
    reference, clone = speech_wav(SENTENCES[3], VOICE_A), speech_wav(SENTENCES[4], VOICE_B)

    def check(request: dict[str, Any], audio: bytes) -> tuple[int, dict[str, Any]]:
        resp = client.post("/v1/check", headers=auth(keys.generator), data={"request": json.dumps(request)},
                           files=[("media", ("a.wav", audio, "audio/wav"))])
        return resp.status_code, dict(resp.json())

    status, source = check({"stage": "input", "use": "voice_clone"}, reference)
    assert status == 200 and source["decision"] == "allow", source["reasons"]
    status, body = check({"stage": "output", "use": "voice_clone"}, clone)
    assert status == 400 and body["error"]["code"] == "input_decision_required"
    bound = {"stage": "output", "use": "voice_clone", "input_decision_id": source["decision_id"]}
    status, out = check(bound, clone)
    assert status == 200 and out["decision"] == "allow", out["reasons"]
    assert all(v["consent"]["state"] == "no_match" for v in out["findings"]["voices"])  # the clone is not her
    assert out["findings"]["inherited"] == [{"subject_id": sid, "source": "voice",
                                             "consent": {"grant_id": grant_id, "state": "granted"}}]
    assert client.delete(f"/v1/grants/{grant_id}", headers=auth(keys.registrar)).status_code == 200
    status, out = check(bound, clone)
    assert status == 200 and out["decision"] == "deny"
    assert [r["rule"] for r in out["reasons"]] == ["voice_clone.output.consent.inherited"]
