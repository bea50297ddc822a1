"""Why: what only a real cluster can show — requests from separate callers meet in one
`@serve.batch` batch, one caller's bad input fails only that caller, a large call spreads over
replicas in batch-sized chunks, and a replica killed (SIGKILL) in the middle of a load is retried
on another replica or fails closed naming the family and model, never answering wrong."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from classifiers import ModelError, builtin_registry
from classifiers.rayserve import RemoteModelError, ServeClient, remote_registry

pytestmark = pytest.mark.ray


def _red(i: int) -> np.ndarray:
    img = np.full((32, 40, 3), (230, 20, 20), dtype=np.uint8)
    img[0, 0, 2] = i  # distinct images, same verdict
    return img


def test_concurrent_callers_share_batches(serve_client: ServeClient, models: Any) -> None:
    nsfw = models.get("nsfw", "fake")
    before = serve_client.info("nsfw")["stats"]
    barrier = threading.Barrier(8)

    def one(i: int) -> list[dict[str, float]]:
        barrier.wait()
        return nsfw.classify([_red(i)])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert all(r == [{"unsafe": 0.99, "suggestive": 0.01}] for r in results)
    after = serve_client.info("nsfw")["stats"]  # one replica: these are its counters
    assert after["items"] - before["items"] == 8
    assert after["batches"] - before["batches"] < 8, "8 simultaneous callers never shared a batch"
    assert after["largest_batch"] > 1


def test_batch_size_and_wait_come_from_the_deployment_config(serve_client: ServeClient) -> None:
    assert serve_client.info("nsfw")["max_batch_size"] == 8
    assert serve_client.info("face")["max_batch_size"] == 4


def test_a_bad_item_fails_only_its_own_caller(serve_client: ServeClient) -> None:
    good = [_red(i) for i in range(4)]
    bad = np.zeros((10, 10), dtype=np.uint8)  # not RGB: the adapter refuses it on the worker

    def send(arr: np.ndarray) -> Any:
        try:
            return serve_client.call("nsfw", "classify", "fake", {}, [arr])[0]
        except RemoteModelError as exc:
            return exc

    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(send, [*good[:2], bad, *good[2:]]))
    assert isinstance(results[2], RemoteModelError) and "RGB" in str(results[2])
    assert [r for i, r in enumerate(results) if i != 2] == [[{"unsafe": 0.99, "suggestive": 0.01}]] * 4


def test_a_large_call_is_chunked_and_keeps_order(models: Any) -> None:
    nsfw = models.get("nsfw", "fake")
    images = [_red(i) if i % 3 else np.zeros((16, 16, 3), dtype=np.uint8) for i in range(21)]
    scores = nsfw.classify(images)  # 21 images, batch size 8: three concurrent chunks
    assert [s["unsafe"] for s in scores] == [0.99 if i % 3 else 0.01 for i in range(21)]


def test_real_model_findings_equal_the_in_process_ones(models: Any, astronaut: np.ndarray) -> None:
    local = builtin_registry().nsfw("opennsfw", {"threads": 1})
    remote = models.get("nsfw", "opennsfw")
    assert remote.info == local.info  # same adapter name, same weights digest
    (a,), (b,) = local.classify([astronaut]), remote.classify([astronaut])
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-4 for k in a)


def test_unknown_model_is_a_clear_error(serve_client: ServeClient) -> None:
    registry = remote_registry(builtin_registry(), serve_client, ["face"])
    with pytest.raises(ModelError, match="hosts: dlib, fake"):
        registry.create("face", "insightface", {})


def test_killed_replica_is_retried_on_another_or_fails_closed(
    ray_cluster: Any, astronaut: np.ndarray
) -> None:
    outcomes: list[str] = []
    client = ServeClient(ray_cluster.serve_url, timeout_s=60,
                         observer=lambda fam, op, s, outcome: outcomes.append(outcome))
    # dlib on a real face: each call keeps a replica busy long enough that the kill finds calls in flight
    face = remote_registry(builtin_registry(), client, ["face"]).face("dlib")
    image = astronaut
    expected = [f.bbox for f in face.analyze(image)]
    assert len(expected) == 1
    pids = ray_cluster.replica_pids("face")
    assert len(pids) == 2
    stop = threading.Event()
    answers: list[Any] = []

    def load() -> None:
        while not stop.is_set():
            try:
                answers.append([f.bbox for f in face.analyze(image)])
            except ModelError as exc:
                answers.append(exc)

    threads = [threading.Thread(target=load) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    os.kill(pids[0], signal.SIGKILL)
    time.sleep(3.0)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    client.close()
    failures = [a for a in answers if isinstance(a, Exception)]
    assert len(answers) > len(failures)
    assert all(a == expected for a in answers if not isinstance(a, Exception)), "a wrong answer got through"
    for exc in failures:  # fail closed, saying where
        assert isinstance(exc, RemoteModelError) and "face model 'dlib'" in str(exc)
    assert "retried" in outcomes, "the killed replica's in-flight calls were not retried"
    # Serve replaces the replica; later tests find two again.
    deadline = time.monotonic() + 120
    while len(ray_cluster.replica_pids("face")) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(ray_cluster.replica_pids("face")) == 2
