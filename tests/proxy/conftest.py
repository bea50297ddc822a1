"""Fixtures for proxy mode end to end: the reference upstream (a real HTTP server on a free
loopback port) and a gateway built by `create_app(settings)` served by uvicorn in a thread,
with a routes file that points at that upstream. After every test the audit log is verified
from outside, and the upstream's call log is reset."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.upstream import ServerThread, UpstreamState, create_upstream_app, free_port
from gateway.app import create_app
from tests.support.gateway import make_settings, verify_audit


def routes_yaml(upstream_url: str, *, per_key: str = "{rate_per_s: 1000, burst: 1000}") -> str:
    down = f"http://127.0.0.1:{free_port()}"
    return f"""
default: demo
limits:
  per_key: {per_key}
routes:
  demo:
    kind: openai-images
    url: {upstream_url}
    use: txt2img
    edit_use: img2img
    model: {{name: demo-upstream, version: "1"}}
    timeout_s: 30
  sd:
    kind: automatic1111
    url: {upstream_url}
    use: txt2img
    model: {{name: stable-diffusion, version: "1.5"}}
    pass_fields: [negative_prompt, steps, hr_prompt]
  generic:
    kind: http-json
    url: {upstream_url}
    use: txt2img
    model: {{name: generic-json}}
    http_json:
      path: /generate
      edit_path: /generate
      request: {{text: "{{prompt}}", count: "{{n}}", width: "{{width}}", height: "{{height}}"}}
      edit_request: {{text: "{{prompt}}", count: "{{n}}", init: "{{image}}"}}
      response_path: output.images.*.base64
  narrow:
    kind: openai-images
    url: {upstream_url}
    use: txt2img
    model: {{name: demo-upstream, version: "1"}}
    max_concurrency: 1
    queue_timeout_s: 0.05
  down:
    kind: openai-images
    url: {down}
    use: txt2img
    model: {{name: nowhere}}
    retries: 1
"""


@dataclass
class Keys:
    acme: str
    globex: str
    operator_admin: str


@dataclass
class ProxyEnv:
    url: str
    app: Any
    upstream: UpstreamState
    upstream_url: str
    keys: Keys
    routes_path: Path

    @property
    def gw(self) -> Any:
        return self.app.state.gateway

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.keys.acme}"}

    def post(self, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        headers = {**self.headers(key), **kw.pop("headers", {})}
        return httpx.post(self.url + path, headers=headers, timeout=120, **kw)

    def audit_size(self) -> int:
        return int(self.gw.audit.head().tree_size)

    def record(self, index: int) -> dict[str, Any]:
        return dict(self.gw.audit.entry(index).record)


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[tuple[UpstreamState, str]]:
    state = UpstreamState()
    with ServerThread(create_upstream_app(state)) as server:
        yield state, server.url


@pytest.fixture(scope="session")
def proxy_env(
    tmp_path_factory: pytest.TempPathFactory, upstream_server: tuple[UpstreamState, str]
) -> Iterator[ProxyEnv]:
    state, upstream_url = upstream_server
    tmp = tmp_path_factory.mktemp("proxy")
    settings = make_settings(tmp)
    routes_path = settings.policies_dir / "routes.yaml"
    routes_path.write_text(routes_yaml(upstream_url))
    app = create_app(settings)
    with ServerThread(app) as server:
        gw = app.state.gateway
        gw.settings.extra["public_url"] = server.url  # links are built only from the configured public URL
        keys = Keys(
            acme=gw.apikeys.create("acme", "generator")[1],
            globex=gw.apikeys.create("globex", "generator")[1],
            operator_admin=gw.apikeys.create("operator", "admin")[1],
        )
        yield ProxyEnv(server.url, app, state, upstream_url, keys, routes_path)
        # the closer the gateway runs at shutdown closes the pooled upstream client on its loop
        gw.proxy.close()
        assert gw.proxy._http is None
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def env(proxy_env: ProxyEnv) -> Iterator[ProxyEnv]:
    proxy_env.upstream.reset()
    yield proxy_env
    proxy_env.upstream.reset()
    verify_audit(proxy_env.gw)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Redis on 127.0.0.1:6379 (CONSENTGATE_TEST_REDIS_URL overrides); skipped when absent."""
    import os

    import redis

    url = os.environ.get("CONSENTGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {url}")
    return url
