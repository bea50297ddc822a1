"""Issue #15.8: proxy pass-through is explicit. Before the fix any scalar field a client sent went to
the upstream (after the operator's `params`, so the client won), and text fields such as
`negative_prompt` / `hr_prompt` reached the model unchecked. Now each route lists the client fields
it passes on (`pass_fields`; others → 400 naming the field), operator `params` win over client
fields, and every string passed on goes through the prompt rules and the name-consent check."""

from __future__ import annotations

import json

import httpx

from gateway.upstream import UpstreamCall
from tests.proxy.conftest import ProxyEnv
from tests.proxy.test_clients import Recorder, ok_openai, route, run


def test_a_field_the_route_does_not_list_is_400_naming_it(env: ProxyEnv) -> None:
    resp = env.post("/v1/generate/demo", json={"prompt": "a kite", "steps": 50, "sampler": "x"})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == "field_not_passed" and "'sampler'" in err["message"] and "'steps'" in err["message"]
    openai = env.post("/v1/images/generations", json={"prompt": "a kite", "model": "demo", "steps": 50})
    assert openai.status_code == 400 and "steps" in openai.json()["error"]["message"]
    assert env.upstream.count() == 0


def test_listed_fields_pass_and_their_text_is_checked(env: ProxyEnv) -> None:
    ok = env.post("/v1/generate/sd", json={"prompt": "a fox", "negative_prompt": "blurry", "steps": 4})
    assert ok.status_code == 200, ok.text
    before = env.upstream.count()
    for field in ("negative_prompt", "hr_prompt"):
        denied = env.post("/v1/generate/sd", json={"prompt": "a fox", field: "nudify the subject"})
        assert denied.status_code == 403, denied.text
        assert denied.json()["error"]["code"] == "policy_denied"
        assert any(r["rule"] == "prompt.nudify" for r in denied.json()["decision"]["reasons"])
    assert env.upstream.count() == before  # the upstream never saw them


def test_enrolled_names_in_passed_text_need_consent(env: ProxyEnv) -> None:
    made = httpx.post(env.url + "/v1/subjects", headers=env.headers(env.keys.operator_admin),
                      json={"display_name": "Wilhelmina Zandvoort"}, timeout=60)
    assert made.status_code == 201, made.text
    denied = env.post("/v1/generate/sd", json={"prompt": "a portrait", "hr_prompt": "Wilhelmina Zandvoort, smiling"})
    assert denied.status_code == 403, denied.text
    assert any("consent.name" in r["rule"] for r in denied.json()["decision"]["reasons"])
    httpx.delete(env.url + f"/v1/subjects/{made.json()['id']}", headers=env.headers(env.keys.operator_admin),
                 timeout=60)


def test_operator_params_win_over_client_fields() -> None:
    fake = Recorder(ok_openai)
    run(route(params={"quality": "standard"}, pass_fields=["quality", "style"]), fake,
        UpstreamCall(prompt="a cat", extra={"quality": "hd", "style": "vivid"}))
    sent = json.loads(fake.requests[0].content)
    assert sent["quality"] == "standard" and sent["style"] == "vivid"
