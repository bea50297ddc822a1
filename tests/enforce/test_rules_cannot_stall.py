"""Issue #15.1: rules cannot stall the gateway. Prompt-rule regexes run on RE2 (patterns only a
backtracking engine can run are refused at load, with file:line), `decide()` runs off the event
loop, and a check over its deadline denies with a reason. Timing lives in bench/prompt_stall.py;
these tests assert behaviour only (each waits on events, with generous safety timeouts)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from classifiers.registry import builtin_registry
from gateway.apikeys import Principal
from gateway.decision import decide as real_decide
from gateway.decision.patterns import rule_regex
from gateway.media import MediaLimits
from gateway.metrics import Metrics
from gateway.pipeline import CheckRequest, Pipeline, PipelineConfig, PipelinePorts
from gateway.pipeline.fakes import ManualClock, MemoryAudit, MemoryConsent, MemoryReleaser, StaticPolicies
from gateway.policy.loader import PolicyError, load_bundle
from gateway.policy.manager import PolicyManager
from gateway.policy.runtime import ModelPool

REPO = Path(__file__).resolve().parents[2]
POLICY = """
name: stall
models:
  fake: {adapter: fake}
consent: {face_model: {adapter: fake}}
prompt:
  rules:
    - id: minors_sexual
      regexes: ['\\b(child|minor)s?\\b.*\\b(nude|naked)\\b']
      outcome: deny
uses:
  txt2img:
    input: {}
"""
ACME = Principal("k1", "acme", "generator")


@pytest.mark.parametrize("pattern", [r"(\w+)\s+\1", r"(?=child).*nude", r"(?<!safe )nude", r"(?>a+)b"])
def test_backtracking_only_patterns_are_refused_at_load_with_file_and_line(tmp_path: Path, pattern: str) -> None:
    (tmp_path / "default.yaml").write_text(POLICY.replace("'\\b(child|minor)s?\\b.*\\b(nude|naked)\\b'",
                                                          f"'{pattern}'"))
    with pytest.raises(PolicyError) as err:
        load_bundle(tmp_path, is_registered=builtin_registry().has)
    msg = err.value.errors[0]
    assert msg.startswith(f"{tmp_path / 'default.yaml'}:")
    assert "prompt.rules.0.regexes" in msg and "RE2" in msg


def test_shipped_policies_load_on_re2() -> None:
    """The repository's own policies use only patterns RE2 runs (the shipped rules stay loadable)."""
    for name in ("default.yaml", "strict.yaml"):
        folder = REPO / "policies"
        assert (folder / name).exists()
    bundle = load_bundle(REPO / "policies", is_registered=builtin_registry().has)
    assert bundle is not None


def test_rule_regexes_run_on_re2_case_insensitively() -> None:
    compiled = rule_regex(r"\b(child|minor)s?\b.*\b(nude|naked)\b")
    assert type(compiled).__module__.startswith("re2")
    assert compiled.search("a CHILD, naked") is not None
    assert compiled.search("child " * 3000) is None


def make(tmp_path: Path, **config: float) -> Pipeline:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "default.yaml").write_text(POLICY)
    policies = StaticPolicies(PolicyManager(folder, ModelPool(builtin_registry())).build())
    ports = PipelinePorts(policies=policies, consent=MemoryConsent(), audit=MemoryAudit(), releaser=MemoryReleaser(),
                          clock=ManualClock(), metrics=Metrics())
    return Pipeline(ports, PipelineConfig(limits=MediaLimits(), scratch_dir=tmp_path, **config))


def test_decide_runs_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While decide() works, the event loop keeps serving (here: a task that releases decide)."""
    pipeline = make(tmp_path)
    released = threading.Event()
    waited: list[bool] = []

    def slow_decide(policy, facts):  # type: ignore[no-untyped-def]
        waited.append(released.wait(timeout=10))  # only the event loop can set it
        return real_decide(policy, facts)

    monkeypatch.setattr("gateway.pipeline.check.decide", slow_decide)

    async def main() -> str:
        async def release_soon() -> None:
            await asyncio.sleep(0.05)
            released.set()

        releaser = asyncio.create_task(release_soon())
        record = await pipeline.check(ACME, CheckRequest(stage="input", use="txt2img", prompt="a child, naked"), [])
        await releaser
        return record.decision

    assert asyncio.run(main()) == "deny"
    assert waited == [True], "decide() blocked the event loop: the loop could not run while it worked"


def test_a_check_over_its_deadline_denies_with_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = make(tmp_path, check_deadline_s=0.2)
    unblock = threading.Event()

    def stuck_decide(policy, facts):  # type: ignore[no-untyped-def]
        unblock.wait(timeout=10)
        return real_decide(policy, facts)

    monkeypatch.setattr("gateway.pipeline.check.decide", stuck_decide)
    try:
        record = asyncio.run(pipeline.check(ACME, CheckRequest(stage="input", use="txt2img", prompt="a cat"), []))
    finally:
        unblock.set()
    assert record.decision == "deny"
    rules = [r.rule for r in record.reasons]
    assert rules == ["txt2img.input.check.deadline"]
    assert "deadline of 0.2s" in record.reasons[0].detail
