"""ModelPool: the deployment's thread setting reaches adapters that take it (unless the policy
sets its own), other adapters never see it, and each model loads once however often it is asked for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from classifiers.base import ModelInfo
from classifiers.registry import ModelRegistry
from gateway.policy.runtime import ModelPool
from gateway.policy.schema import ModelSpec


class Recorder:
    labels = ("unsafe",)

    def __init__(self, options: Mapping[str, Any]):
        self.options = dict(options)
        self.info = ModelInfo("rec", "v1")

    def classify(self, images: Any) -> list[dict[str, float]]:
        return [{"unsafe": 0.0} for _ in images]


def test_threads_reach_only_adapters_that_take_them() -> None:
    reg = ModelRegistry()
    reg.register("nsfw", "threaded", Recorder, takes_threads=True)
    reg.register("nsfw", "plain", Recorder)
    pool = ModelPool(reg, threads=3)
    assert pool.get("nsfw", ModelSpec(adapter="threaded")).options == {"threads": 3}
    assert pool.get("nsfw", ModelSpec(adapter="plain")).options == {}
    assert pool.get("nsfw", ModelSpec(adapter="threaded", options={"threads": 1})).options == {"threads": 1}
    first = pool.get("nsfw", ModelSpec(adapter="threaded"))
    assert pool.get("nsfw", ModelSpec(adapter="threaded")) is first  # loaded once
