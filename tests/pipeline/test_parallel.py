"""Intra-request parallelism (gateway/pipeline/parallel.py, #21.3 / #20): a check runs its stages side
by side and gives the face analyzer the cores; capped by `split_below` (checks in flight), it runs them
one after another on one thread each — and the verdict and facts do not depend on which."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifiers._common import budget_set
from classifiers.fake import draw_fake_face
from classifiers.registry import builtin_registry
from gateway.apikeys import Principal
from gateway.media import MediaLimits
from gateway.metrics import Metrics
from gateway.pipeline import CheckRequest, Pipeline, PipelineConfig, PipelinePorts
from gateway.pipeline.fakes import ManualClock, MemoryAudit, MemoryConsent, MemoryReleaser, StaticPolicies
from gateway.pipeline.parallel import InFlight
from gateway.policy.manager import PolicyManager
from gateway.policy.runtime import ModelPool
from gateway.settings import Settings
from tests.support.policy import FAKE_TXT2IMG_USES

POLICY = """
name: parallel
models:
  fake: {adapter: fake}
consent:
  face_model: {adapter: fake}
  match_threshold: 0.9
hash_list:
  model: {adapter: pdq}
""" + FAKE_TXT2IMG_USES
ACME = Principal("k1", "acme", "generator")


def test_every_check_splits_unless_capped() -> None:
    two = InFlight(cores=2)
    assert (two.split_below, [two.budget(n) for n in (1, 2, 5)]) == (None, [2, 2, 2])
    assert [InFlight(cores=8).budget(n) for n in (1, 2, 3, 5)] == [8, 4, 2, 2]
    alone = InFlight(split_below=2, cores=2)  # split only a check that is alone
    assert [alone.budget(n) for n in (1, 2, 3)] == [2, 1, 1]
    assert [InFlight(split_below=s, cores=2).budget(1) for s in (0, 1, 2)] == [1, 1, 2]
    assert InFlight(cores=1).budget(1) == 1
    with pytest.raises(ValueError, match="split_below"):
        InFlight(split_below=-1, cores=2)


def test_admission_counts_checks_in_flight_and_always_lets_go() -> None:
    flight = InFlight(cores=2)
    with flight.admit() as first:
        with flight.admit() as second:
            assert (first, second, flight.count) == (2, 2, 2)
        with pytest.raises(RuntimeError), flight.admit():
            assert flight.count == 2
            raise RuntimeError("a failing check")
        assert flight.count == 1
    assert flight.count == 0


def test_the_setting_reaches_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSENTGATE_SPLIT_BELOW", "0")
    assert Settings.from_env().split_below == 0
    monkeypatch.delenv("CONSENTGATE_SPLIT_BELOW")
    assert Settings.from_env().split_below is None
    monkeypatch.setenv("CONSENTGATE_SPLIT_BELOW", "-2")
    with pytest.raises(ValueError, match="SPLIT_BELOW"):
        Settings.from_env()


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> StaticPolicies:
    folder: Path = tmp_path_factory.mktemp("policies")
    (folder / "default.yaml").write_text(POLICY)
    return StaticPolicies(PolicyManager(folder, ModelPool(builtin_registry())).build())


def with_person() -> bytes:
    img = np.full((160, 160, 3), 90, np.uint8)
    draw_fake_face(img, 7, 40, 40, 64)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


class Recorder:
    """Stands in for the fake models' sleep: notes each call's thread budget and when it ran."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None, float, float]] = []
        self._lock = threading.Lock()

    def hook(self, name: str):  # type: ignore[no-untyped-def]
        def sleeper(seconds: float) -> None:
            start = time.perf_counter()
            time.sleep(seconds)
            with self._lock:
                self.calls.append((name, budget_set(), start, time.perf_counter()))

        return sleeper


def run_check(policies: StaticPolicies, tmp_path: Path, flight: InFlight) -> tuple[Recorder, dict[str, object]]:
    ports = PipelinePorts(policies=policies, consent=MemoryConsent(), audit=MemoryAudit(),
                          releaser=MemoryReleaser(), clock=ManualClock(), metrics=Metrics())
    pipeline = Pipeline(ports, PipelineConfig(limits=MediaLimits(), scratch_dir=tmp_path))
    pipeline.checker.in_flight = flight
    rt = policies.active.for_tenant("acme")  # type: ignore[union-attr]
    recorder = Recorder()
    models = {"face": rt.face, "fake": rt.nsfw["fake"]}
    try:
        for name, model in models.items():
            model.faults.sleep_s, model.faults.sleeper = 0.15, recorder.hook(name)  # type: ignore[attr-defined]
        request = CheckRequest(stage="output", use="txt2img")
        record = asyncio.run(pipeline.check(ACME, request, [with_person()])).to_dict()
    finally:
        for model in models.values():
            model.faults.sleep_s, model.faults.sleeper = 0.0, time.sleep  # type: ignore[attr-defined]
    return recorder, record


def overlapping(calls: list[tuple[str, int | None, float, float]]) -> bool:
    spans = sorted((start, end) for _, _, start, end in calls)
    return any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))


def test_split_the_stages_run_side_by_side_with_the_cores(policies: StaticPolicies,
                                                                      tmp_path: Path) -> None:
    recorder, _ = run_check(policies, tmp_path, InFlight(cores=2))
    budgets = {name: budget for name, budget, _, _ in recorder.calls}
    assert budgets == {"face": 2, "fake": 2}
    assert overlapping(recorder.calls)


@pytest.mark.parametrize("flight", [InFlight(split_below=0, cores=2), InFlight(cores=1)])
def test_not_split_the_stages_run_one_after_another_on_one_thread(policies: StaticPolicies, tmp_path: Path,
                                                                   flight: InFlight) -> None:
    recorder, _ = run_check(policies, tmp_path, flight)
    assert sorted(name for name, _, _, _ in recorder.calls) == ["face", "fake"]
    assert {budget for _, budget, _, _ in recorder.calls} == {1}
    assert not overlapping(recorder.calls)


def test_the_record_does_not_depend_on_the_schedule(policies: StaticPolicies, tmp_path: Path) -> None:
    _, split = run_check(policies, tmp_path, InFlight(cores=2))
    _, serial = run_check(policies, tmp_path, InFlight(split_below=0, cores=2))
    keep = ("decision", "reasons", "findings", "obligations")
    assert [split[k] for k in keep] == [serial[k] for k in keep]
    assert split["findings"]["faces"] and split["findings"]["nsfw"]  # type: ignore[index]
