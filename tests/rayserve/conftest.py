"""Why: the Ray backend is tested against a real cluster, not a mock: one bounded local cluster
(2 CPUs, a 100 MB object store, every model family with its memory capped) is started once per
test session on 127.0.0.1, shared by the tests marked `ray`, and always stopped at the end —
with every process it spawned (`LocalCluster.stop`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from classifiers import builtin_registry
from tests.classifiers.conftest import ModelCache

# What the tests deploy: every package-weight adapter of the servable families (the contract
# classes run over all of them), the fakes for the failure paths; 2 CPUs in all.
TEST_WORKERS: dict[str, Any] = {"families": {
    "nsfw": {"models": [{"adapter": "fake"}, {"adapter": "opennsfw"}, {"adapter": "nudenet"}],
             "replicas": 1, "num_cpus": 0.5, "memory_mb": 768, "max_batch_size": 8,
             "batch_wait_timeout_s": 0.05},   # long enough that concurrent test calls meet in one batch
    "face": {"models": [{"adapter": "fake"}, {"adapter": "dlib"}],
             "replicas": 2, "num_cpus": 0.5, "memory_mb": 512, "max_batch_size": 4, "batch_wait_timeout_s": 0.002},
    "text": {"models": [{"adapter": "minilm"}], "replicas": 1, "num_cpus": 0.25, "memory_mb": 1024},
    "hash": {"models": [{"adapter": "pdq"}], "replicas": 1, "num_cpus": 0.25, "memory_mb": 256},
}}


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    pytest.importorskip("ray", reason="the Ray backend needs the ray[serve] install (scripts/install.sh)")
    from classifiers.rayserve.cluster import LocalCluster

    cluster = LocalCluster(num_cpus=2, object_store_mb=100)
    try:
        cluster.start()
        cluster.deploy(TEST_WORKERS)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def serve_client(ray_cluster: Any) -> Iterator[Any]:
    from classifiers.rayserve import ServeClient

    client = ServeClient(ray_cluster.serve_url, timeout_s=60)
    yield client
    client.close()


@pytest.fixture(scope="session")
def models(serve_client: Any) -> ModelCache:
    """The contract tests' model cache, over the ray backend (overrides tests/classifiers')."""
    from classifiers.rayserve import SERVABLE, remote_registry

    return ModelCache(remote_registry(builtin_registry(), serve_client, SERVABLE))
