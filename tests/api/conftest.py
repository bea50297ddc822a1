"""Fixtures for tests through the HTTP app: a gateway built by `create_app(settings)` on a temp
data dir (SQLite by default, PostgreSQL when CONSENTGATE_TEST_DATABASE_URL is set), with the real
models, plus keys for each role. After every test the audit log is verified from outside."""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from gateway.app import create_app
from gateway.settings import Settings

REPO = Path(__file__).resolve().parents[2]

TEST_POLICY = """
name: test
models:
  opennsfw: {adapter: opennsfw}
  nudenet: {adapter: nudenet}
  fake: {adapter: fake}
consent:
  face_model: {adapter: dlib}
  match_threshold: 0.93
prompt:
  rules:
    - {id: nudify, terms: [nudify], outcome: deny}
uses:
  txt2img:
    input: {}
    output:
      nsfw:
        - model: opennsfw
          labels: {nsfw: {deny: 0.8, review: 0.5}}
        - model: fake
          labels: {unsafe: {deny: 0.8}, suggestive: {review: 0.6}}
  img2img:
    input:
      nsfw:
        - model: opennsfw
          labels: {nsfw: {deny: 0.8, review: 0.5}}
        - model: nudenet
          labels: {FEMALE_GENITALIA_EXPOSED: {deny: 0.5}}
        - model: fake
          labels: {unsafe: {deny: 0.8}, suggestive: {review: 0.6}}
    output:
      nsfw:
        - model: fake
          labels: {unsafe: {deny: 0.8}, suggestive: {review: 0.6}}
  face_swap:
    input:
      faces: {unmatched: deny}
"""


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr)).save(buf, "PNG")
    return buf.getvalue()


def jpeg(arr: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def solid(rgb: tuple[int, int, int], size: int = 320) -> np.ndarray:
    return np.full((size, size, 3), rgb, np.uint8)


def database_url(tmp: Path) -> str | None:
    url = os.environ.get("CONSENTGATE_TEST_DATABASE_URL")
    if not url:
        return None
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def make_settings(tmp: Path, policy_text: str = TEST_POLICY, **extra: Any) -> Settings:
    policies = tmp / "policies"
    policies.mkdir(parents=True, exist_ok=True)
    (policies / "default.yaml").write_text(policy_text)
    return Settings(data_dir=tmp / "data", policies_dir=policies, database_url=database_url(tmp),
                    policy_reload_interval_s=0.2, audit_checkpoint_every=1, audit_checkpoint_interval_ms=50,
                    **extra)


class Keys:
    def __init__(self, client: TestClient):
        gw = client.app.state.gateway  # type: ignore[attr-defined]
        self.generator = gw.apikeys.create("acme", "generator")[1]
        self.other_generator = gw.apikeys.create("globex", "generator")[1]
        self.admin = gw.apikeys.create("operator", "admin")[1]
        self.registrar = gw.apikeys.create("operator", "registrar")[1]
        self.auditor = gw.apikeys.create("operator", "auditor")[1]
        self.tenant_auditor = gw.apikeys.create("acme", "auditor")[1]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def gateway_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Keys]]:
    tmp = tmp_path_factory.mktemp("gw")
    app = create_app(make_settings(tmp))
    with TestClient(app) as client:
        yield client, Keys(client)
    shutil.rmtree(tmp, ignore_errors=True)


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
    from gateway.audit import verify_database

    gw = tc.app.state.gateway  # type: ignore[attr-defined]
    gw.audit.publish_checkpoint()
    report = verify_database(gw.engine, gw.audit.signer)
    assert report.ok, report.message


def check(tc: TestClient, key: str, request: dict[str, Any], *media: bytes) -> Any:
    import json

    files = [("media", (f"m{i}.bin", data, "application/octet-stream")) for i, data in enumerate(media)]
    return tc.post("/v1/check", headers=auth(key), data={"request": json.dumps(request)}, files=files or None)
