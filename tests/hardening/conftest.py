"""Fixtures for the hardening tests: a real gateway (`create_app(settings)` with the real models and the
`fake` adapter) served by uvicorn on a free loopback port, small limits (2 MB per part, 4 Mpixel) so
that "over the limit" is cheap to send, keys for every role (tests/support/gateway.py), a guard that refuses any network
connection that is not to the loopback interface, and a sampler of this process's peak RSS."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.upstream import ServerThread
from gateway.app import create_app
from tests.support.gateway import Keys, auth, make_settings, verify_audit

PART_LIMIT = 2_000_000
MAX_PIXELS = 4_000_000


def _loopback(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX path
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every socket connection a hardening test makes (or makes the gateway make) goes to 127.0.0.1."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> Any:
        if not _loopback(address):
            raise AssertionError(
                f"hardening tests talk to loopback only; refused a connection to {address!r}"
            )
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if not _loopback(address):
            raise AssertionError(
                f"hardening tests talk to loopback only; refused a connection to {address!r}"
            )
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


RoleKeys = Keys  # a key per role (tests/support/gateway.py)
bearer = auth


@dataclass
class Served:
    url: str
    app: Any
    keys: RoleKeys
    tmp: Path
    http: httpx.Client

    @property
    def gw(self) -> Any:
        return self.app.state.gateway

    def post(self, path: str, key: str, **kw: Any) -> httpx.Response:
        return self.http.post(self.url + path, headers=bearer(key), **kw)

    def get(self, path: str, key: str, **kw: Any) -> httpx.Response:
        return self.http.get(self.url + path, headers=bearer(key), **kw)

    def audit_size(self) -> int:
        return int(self.gw.audit.head().tree_size)


def serve_gateway(tmp: Path, policy_text: str | None = None, **overrides: Any) -> tuple[ServerThread, Any]:
    kwargs: dict[str, Any] = {
        "max_upload_bytes": PART_LIMIT,
        "max_pixels": MAX_PIXELS,
        "rate_limit_per_s": 0,
        "extra": {"jobs_webhook_hosts": "127.0.0.1", **overrides.pop("extra", {})},
    }
    kwargs.update(overrides)
    settings = make_settings(tmp, policy_text, **kwargs) if policy_text else make_settings(tmp, **kwargs)
    app = create_app(settings)
    server = ServerThread(app).start()
    return server, app


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("hardened")
    server, app = serve_gateway(tmp)
    try:
        with httpx.Client(timeout=httpx.Timeout(90.0)) as http:
            yield Served(server.url, app, RoleKeys.create(app.state.gateway), tmp, http)
        verify_audit(app.state.gateway)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line")


class PeakRss:
    """Samples VmRSS every 2 ms while the block runs: `growth` = peak − RSS at entry."""

    def __init__(self, pid: int | str = "self", every_s: float = 0.002):
        self.pid, self.every_s = pid, every_s
        self.baseline = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(self.every_s)

    def __enter__(self) -> PeakRss:
        self.baseline = self.peak = rss_bytes(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.baseline
