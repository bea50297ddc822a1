"""The registry router on a minimal app (its own error handlers, real API-key store, fake audit log,
fake face analyzer): roles, status codes, 422 for refused enrolments, erasure receipts in the audit log,
and no template or ciphertext in any response."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from classifiers.fake import draw_fake_face, fake_face_embedding
from gateway.apikeys import ApiKeyRow, ApiKeyStore
from gateway.media import MediaLimits

pytestmark = pytest.mark.db


@dataclass
class FakeAuditEntry:
    index: int
    record: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "record": self.record}


@dataclass
class FakeAudit:
    entries: list[FakeAuditEntry] = field(default_factory=list)

    def append(self, record: dict[str, Any]) -> FakeAuditEntry:
        entry = FakeAuditEntry(len(self.entries), json.loads(json.dumps(record)))
        self.entries.append(entry)
        return entry

    def query(self, subject: str | None = None, cursor: str | None = None, limit: int = 100) -> Any:
        hits = [e for e in self.entries if subject in e.record.get("subjects", [])]
        return hits[:limit], None


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def face_png(*identities: int) -> bytes:
    img = np.full((240, 120 + 110 * len(identities), 3), 90, np.uint8)
    for i, ident in enumerate(identities):
        draw_fake_face(img, ident, 20 + 110 * i, 60, 80)
    return png(img)


@pytest.fixture
def api(
    make_registry: Any, main_engine: Engine
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], Any]]:
    from gateway.api.errors import install_error_handlers as _install_error_handlers
    from gateway.api.registry import router

    SQLModel.metadata.create_all(main_engine, tables=[ApiKeyRow.__table__])  # type: ignore[attr-defined]
    keys = ApiKeyStore(main_engine, "operator")
    reg = make_registry()
    app = FastAPI()
    _install_error_handlers(app)
    app.include_router(router)
    app.state.gateway = SimpleNamespace(
        started=True, apikeys=keys, registry=reg, audit=FakeAudit(), limits=MediaLimits()
    )
    headers = {
        role: {"Authorization": f"Bearer {keys.create(tenant, role)[1]}"}
        for tenant, role in [("operator", "registrar"), ("acme", "generator"), ("operator", "admin")]
    }
    with TestClient(app) as client:
        yield client, headers, app.state.gateway
    SQLModel.metadata.drop_all(main_engine, tables=[ApiKeyRow.__table__])  # type: ignore[attr-defined]


def test_registry_lifecycle_over_http(api: Any) -> None:
    client, h, gw = api
    r = client.post(
        "/v1/subjects",
        json={"display_name": "Zoë Adams", "aliases": ["Zo"], "protected": True},
        headers=h["registrar"],
    )
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert client.get("/v1/subjects", headers=h["admin"]).json()["subjects"][0]["display_name"] == "Zoë Adams"

    r = client.post(
        f"/v1/subjects/{sid}/faces",
        headers=h["registrar"],
        data={"notice_version": "n-1"},
        files=[("media", ("a.png", face_png(11), "image/png"))],
    )
    assert r.status_code == 201, r.text
    assert r.json()["templates"] == {"fake": 1}
    assert gw.registry.match_faces("fake", np.stack([fake_face_embedding(11)]), 0.9)[0][0].subject_id == sid

    r = client.post(
        f"/v1/subjects/{sid}/grants",
        headers=h["registrar"],
        json={"grantee_tenant": "acme", "uses": ["txt2img"], "expires_at": "2030-01-01T00:00:00Z"},
    )
    assert r.status_code == 201, r.text
    grant_id = r.json()["id"]
    assert r.json()["expires_at"].startswith("2030-01-01")
    assert [
        g["id"] for g in client.get(f"/v1/subjects/{sid}/grants", headers=h["registrar"]).json()["grants"]
    ] == [grant_id]
    r = client.delete(f"/v1/grants/{grant_id}", headers=h["registrar"])
    assert r.status_code == 200 and r.json()["revoked_at"]

    r = client.post(f"/v1/subjects/{sid}/hashes", headers=h["registrar"], json={"hashes": ["ab" * 32]})
    assert r.status_code == 201 and r.json()["added"] == 1
    subject = client.get(f"/v1/subjects/{sid}", headers=h["registrar"]).json()
    assert subject["template_count"] == 1 and subject["hash_count"] == 1 and subject["protected"] is True
    assert not {"embedding", "embedding_ct", "profile_ct", "image_ct"} & set(subject)

    r = client.delete(f"/v1/subjects/{sid}", headers=h["registrar"])
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["kind"] == "erasure" and receipt["subjects"] == [sid] and receipt["audit"]["index"] == 0
    assert "Zo" not in json.dumps(receipt)
    uses = client.get(f"/v1/subjects/{sid}/uses", headers=h["registrar"]).json()
    assert [e["record"]["kind"] for e in uses["entries"]] == ["erasure"]
    assert client.get(f"/v1/subjects/{sid}", headers=h["registrar"]).status_code == 404
    assert client.delete(f"/v1/subjects/{sid}", headers=h["registrar"]).status_code == 404


def test_errors_and_roles(api: Any, coffee: np.ndarray) -> None:
    client, h, gw = api
    assert client.post("/v1/subjects", json={"display_name": "X"}, headers=h["generator"]).status_code == 403
    assert client.get("/v1/subjects").status_code == 401
    sid = client.post("/v1/subjects", json={"display_name": "X"}, headers=h["registrar"]).json()["id"]

    def enrol(*parts: bytes, notice: str | None = "n-1") -> Any:
        return client.post(
            f"/v1/subjects/{sid}/faces",
            headers=h["registrar"],
            data={"notice_version": notice} if notice else {},
            files=[("media", (f"{i}.png", p, "image/png")) for i, p in enumerate(parts)],
        )

    r = enrol(png(np.ascontiguousarray(coffee)))
    assert r.status_code == 422 and r.json()["error"]["reason"] == "no_face"
    r = enrol(face_png(1), face_png(1, 2))
    assert r.status_code == 422 and r.json()["error"]["reason"] == "multiple_faces"
    assert r.json()["error"]["media_index"] == 1
    assert enrol(face_png(1), notice=None).status_code == 422
    assert enrol(b"not an image").status_code == 415
    assert enrol(*[face_png(1)] * 11).status_code == 422
    r = client.post(
        f"/v1/subjects/{sid}/faces",
        headers=h["registrar"],
        data={"request": json.dumps({"notice_version": "n-2"})},
        files=[("media", ("a.png", face_png(3), "image/png"))],
    )
    assert r.status_code == 201 and r.json()["notice_version"] == "n-2"

    assert (
        client.post(
            "/v1/subjects/nope/grants",
            headers=h["registrar"],
            json={"grantee_tenant": "acme", "uses": ["txt2img"]},
        ).status_code
        == 404
    )
    assert (
        client.post(
            f"/v1/subjects/{sid}/grants", headers=h["registrar"], json={"grantee_tenant": "acme", "uses": []}
        ).status_code
        == 422
    )
    assert client.delete("/v1/grants/nope", headers=h["registrar"]).status_code == 404
    assert (
        client.post(f"/v1/subjects/{sid}/hashes", headers=h["registrar"], json={"hashes": ["zz"]}).status_code
        == 422
    )

    gw.registry.faults.unavailable = True
    r = client.get(f"/v1/subjects/{sid}", headers=h["registrar"])
    assert r.status_code == 503 and r.json()["error"]["code"] == "registry_unavailable"
