"""Fixtures for tests through the HTTP app: a gateway built by `create_app(settings)` on a temp
data dir (SQLite by default, PostgreSQL when CONSENTGATE_TEST_DATABASE_URL is set), with the real
models, plus keys for each role. After every test the audit log is verified from outside. The
building blocks are shared with the other folders: tests/support/gateway.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.gateway import (
    TEST_POLICY,
    Keys,
    app_client,
    auth,
    database_url,
    jpeg,
    make_settings,
    png,
    solid,
    verify_audit,
)

__all__ = ["TEST_POLICY", "Keys", "auth", "check", "database_url", "jpeg", "make_settings", "png", "solid",
           "verify_log"]


@pytest.fixture(scope="module")
def gateway_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Keys]]:
    tmp = tmp_path_factory.mktemp("gw")
    with app_client(make_settings(tmp), tmp) as made:
        yield made


@pytest.fixture
def client(gateway_client: tuple[TestClient, Keys]) -> Iterator[TestClient]:
    tc, _ = gateway_client
    yield tc
    verify_log(tc)


@pytest.fixture
def keys(gateway_client: tuple[TestClient, Keys]) -> Keys:
    return gateway_client[1]


def verify_log(tc: TestClient) -> None:
    """Re-verify the published log from outside after every test (as Sunlight's CheckLog does)."""
    verify_audit(tc)


def check(tc: TestClient, key: str, request: dict[str, Any], *media: bytes) -> Any:
    files = [("media", (f"m{i}.bin", data, "application/octet-stream")) for i, data in enumerate(media)]
    return tc.post("/v1/check", headers=auth(key), data={"request": json.dumps(request)}, files=files or None)
