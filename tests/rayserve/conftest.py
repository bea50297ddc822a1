"""Why: the Ray backend is tested against a real cluster, not a mock: one bounded local cluster
(2 CPUs, a 100 MB object store, every model family with its memory capped) is started once per
test session on 127.0.0.1, shared by the tests marked `ray`, and always stopped at the end —
with every process it spawned (`LocalCluster.stop`)."""

from __future__ import annotations

import contextlib
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
    "text": {"models": [{"adapter": "minilm"}], "replicas": 1, "num_cpus": 0.125, "memory_mb": 1024},
    "hash": {"models": [{"adapter": "pdq"}], "replicas": 1, "num_cpus": 0.125, "memory_mb": 256},
    "voice": {"models": [{"adapter": "fake"}, {"adapter": "resemblyzer"}], "replicas": 1, "num_cpus": 0.25,
              "memory_mb": 768, "max_batch_size": 8},
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


class Forwarder:
    """A TCP relay on 127.0.0.1 in front of the Serve proxy: `cut()` drops every connection and
    refuses new ones (the cluster unreachable, as a network partition or a dead head looks to a
    gateway), `restore()` listens again on the same port."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self.target_port = target_port
        self._socket_mod = socket
        self._lock = threading.Lock()
        self._conns: list[Any] = []
        self._listener: Any = None
        self.port = 0
        self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        import threading

        socket = self._socket_mod
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: Any) -> None:
        import threading

        socket = self._socket_mod
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        socket = self._socket_mod
        with contextlib.suppress(OSError):  # wakes the thread blocked in accept(); close alone would not
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        self.cut()
