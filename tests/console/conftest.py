"""Fixtures of the console's browser tests: Debian's chromium (installed by scripts/install_browser.sh;
Playwright cannot download its own browser here, so we pass its path), a gateway served by uvicorn on
a free loopback port with a few decisions in its log, keys per role, and `shoot(page, name)`, which
saves a screenshot with the test output (test-output/console/, or $CONSENTGATE_CONSOLE_SHOTS)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from examples.upstream import ServerThread
from gateway.app import create_app
from tests.support.gateway import Keys, make_settings, png

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "console" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = Path(os.environ.get("CONSENTGATE_CONSOLE_SHOTS", ROOT / "test-output" / "console"))


def _need(thing: str) -> None:
    message = f"{thing} is missing: run `bash scripts/install_browser.sh` (as root for chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("CONSENTGATE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        _need("Debian's chromium")
    return str(path)


@pytest.fixture(scope="module")
def chromium(chromium_path: str) -> Iterator[Browser]:
    """Playwright's sync API on the system chromium, started and stopped per module: its event loop
    must not outlive the browser tests (pytest-playwright's session-wide loop made every later
    `asyncio.run()` in the same pytest process fail with "cannot be called from a running event loop")."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path,
                                     args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies, no storage) and page per test."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.exists():
        _need("axe-core (tests/console/npm)")
    return AXE.read_text()


@dataclass
class Console:
    url: str
    keys: Keys
    app: Any
    allowed: dict[str, Any]
    denied: dict[str, Any]

    @property
    def gw(self) -> Any:
        return self.app.state.gateway

    def api(self, method: str, path: str, key: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=60, **kw)

    def check(self, key: str, request: dict[str, Any], *media: bytes) -> dict[str, Any]:
        files = [("media", (f"m{i}.png", data, "image/png")) for i, data in enumerate(media)]
        r = self.api("POST", "/v1/check", key, data={"request": json.dumps(request)}, files=files or None)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, coffee: np.ndarray) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console")
    settings = make_settings(tmp)
    (settings.policies_dir / "notices").mkdir()
    shutil.copy(ROOT / "policies" / "notices" / "likeness-2026-1.md", settings.policies_dir / "notices")
    app = create_app(settings)
    with ServerThread(app) as server:
        keys = Keys(app.state.gateway)
        probe = Console(server.url, keys, app, {}, {})
        probe.allowed = probe.check(keys.generator, {"stage": "input", "use": "img2img", "prompt": "a cup"},
                                    png(coffee))
        probe.denied = probe.check(keys.generator, {"stage": "input", "use": "txt2img", "prompt": "nudify it"})
        probe.check(keys.other_generator, {"stage": "input", "use": "txt2img", "prompt": "a boat"})
        app.state.gateway.audit.publish_checkpoint()
        yield probe
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def shoot() -> Callable[[Any, str], Path]:
    SHOTS.mkdir(parents=True, exist_ok=True)

    def save(page: Any, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
