"""Why: every test folder that drives a whole gateway needs the same things — settings on a temp
data dir (SQLite, or a fresh PostgreSQL schema when CONSENTGATE_TEST_DATABASE_URL is set), a gateway
built by `create_app`, a key per role, and the audit log verified from outside after the test (as
Sunlight's CheckLog does). They are defined once here; the folders' conftests build their fixtures
from them (tests/api: in process; tests/jobs: with a video policy; tests/proxy and tests/hardening:
served by uvicorn on a free loopback port)."""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from gateway.app import create_app
from gateway.context import Gateway
from gateway.settings import Settings

__all__ = ["TEST_POLICY", "Keys", "app_client", "auth", "database_url", "jpeg", "make_settings", "png", "solid",
           "verify_audit"]

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
    """None (SQLite in the data dir), or a fresh schema of CONSENTGATE_TEST_DATABASE_URL."""
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


def _gateway(source: Any) -> Gateway:
    """The gateway of a TestClient, of an app, or the gateway itself."""
    app = getattr(source, "app", source)
    gw: Gateway = getattr(getattr(app, "state", None), "gateway", None) or source
    return gw


@dataclass(init=False)
class Keys:
    """One key per role: generators of two tenants, the operator's admin, registrar and auditor,
    and a tenant auditor. `Keys(client_or_gateway)`."""

    generator: str
    other_generator: str
    admin: str
    registrar: str
    auditor: str
    tenant_auditor: str

    def __init__(self, source: Any) -> None:
        gw = _gateway(source)
        self.generator = gw.apikeys.create("acme", "generator")[1]
        self.other_generator = gw.apikeys.create("globex", "generator")[1]
        self.admin = gw.apikeys.create("operator", "admin")[1]
        self.registrar = gw.apikeys.create("operator", "registrar")[1]
        self.auditor = gw.apikeys.create("operator", "auditor")[1]
        self.tenant_auditor = gw.apikeys.create("acme", "auditor")[1]

    @classmethod
    def create(cls, source: Any) -> Keys:
        return cls(source)

    def by_role(self) -> dict[str, str]:
        return {"generator": self.generator, "admin": self.admin, "registrar": self.registrar,
                "auditor": self.auditor, "tenant_auditor": self.tenant_auditor}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def verify_audit(source: Any) -> None:
    """Re-verify the published log from outside (a checkpoint first, so every entry is covered)."""
    from gateway.audit import verify_database

    gw = _gateway(source)
    gw.audit.publish_checkpoint()
    report = verify_database(gw.engine, gw.audit.signer)
    assert report.ok, report.message


@contextmanager
def app_client(settings: Settings, tmp: Path | None = None) -> Iterator[tuple[TestClient, Keys]]:
    """A gateway on `settings` in process, with a key per role; `tmp` is removed afterwards."""
    try:
        with TestClient(create_app(settings)) as client:
            yield client, Keys(client)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
