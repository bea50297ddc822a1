"""Why: every Prometheus label combination is a child that lives as long as the process, so a label
copied from the request lets any caller grow the gateway's memory and its /metrics page without
bound (issue #21.4). Uses the policy does not name and invented HTTP methods are counted under
`other`; the label sets stay bounded however many distinct values callers send."""

from __future__ import annotations

from fastapi.testclient import TestClient

from gateway.metrics import OTHER, Metrics
from tests.api.conftest import Keys, check


def _children(metric: object) -> set[tuple[str, ...]]:
    return set(metric._metrics)  # type: ignore[attr-defined]  # prometheus_client's child map


def test_unknown_uses_and_methods_share_one_child() -> None:
    metrics = Metrics()
    for i in range(500):
        metrics.count_decision("input", f"made-up-{i}", "deny", known_uses={"txt2img"})
        metrics.count_request("unmatched", f"VERB{i}", 405, 0.001)
    metrics.count_decision("input", "txt2img", "allow", known_uses={"txt2img"})
    metrics.count_request("/v1/check", "POST", 200, 0.01)
    assert _children(metrics.decisions) == {("input", OTHER, "deny"), ("input", "txt2img", "allow")}
    assert _children(metrics.requests) == {("unmatched", OTHER, "405"), ("/v1/check", "POST", "200")}


def test_decisions_on_uses_the_policy_does_not_name_do_not_grow_the_registry(client: TestClient,
                                                                               keys: Keys) -> None:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    before = len(_children(gw.metrics.decisions))
    answers = [check(client, keys.generator, {"stage": "input", "use": f"invented-{i}", "prompt": "a cat"})
               for i in range(40)]
    assert {a.status_code for a in answers} <= {200, 403}, {a.status_code for a in answers}
    decided = sum(1 for a in answers if a.status_code == 200)
    labels = _children(gw.metrics.decisions)
    assert not any(use.startswith("invented-") for _, use, _ in labels), labels
    assert len(labels) <= before + 3  # at most one `other` child per decision value
    if decided:
        assert any(use == OTHER for _, use, _ in labels)
    text = client.get("/metrics").text
    assert "invented-" not in text
