"""The registry router on a minimal app (its own error handlers, real API-key store, a real audit log
on the same database as the consent ledger, fake face analyzer): roles, status codes, 422 for refused
enrolments, every mutation a ledger entry, and no template or ciphertext in any response."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
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
from gateway.audit import AuditLog, CheckpointSigner
from gateway.audit.testing import assert_log_consistent
from gateway.media import MediaLimits

pytestmark = pytest.mark.db


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
    log = AuditLog(main_engine, CheckpointSigner.generate("registry.test/log"), origin="registry.test/log",
                   checkpoint_interval_ms=0, index_interval_ms=0)
    log.create_tables()
    reg.attach_ledger(log, "operator")
    app = FastAPI()
    _install_error_handlers(app)
    app.include_router(router)
    app.state.gateway = SimpleNamespace(
        started=True, apikeys=keys, registry=reg, audit=log, limits=MediaLimits()
    )
    headers = {
        role: {"Authorization": f"Bearer {keys.create(tenant, role)[1]}"}
        for tenant, role in [("operator", "registrar"), ("acme", "generator"), ("operator", "admin")]
    }
    with TestClient(app) as client:
        yield client, headers, app.state.gateway
    log.publish_checkpoint()
    log.close()
    assert_log_consistent(log, require_covered=True)
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
    assert receipt["kind"] == "erasure" and receipt["subjects"] == [sid] and receipt["audit"]["index"] == 5
    assert receipt["tenant"] == "operator" and receipt["counts"]["subject_keys"] == 1
    assert "Zo" not in json.dumps(receipt)
    uses = client.get(f"/v1/subjects/{sid}/uses", headers=h["registrar"]).json()
    assert uses["uses"] == [] and uses["next_cursor"] is None  # no decision involved them
    ledger = [e.record for e in gw.audit.query(subject=sid)[0]]
    assert [r["kind"] for r in ledger] == ["subject", "enrolment", "grant", "revocation", "hash", "erasure"]
    assert "Zo" not in json.dumps(ledger)  # names never reach the log
    assert ledger[1]["notice_version"] == "n-1" and ledger[1]["image_count"] == 1 and ledger[1]["modality"] == "face"
    assert ledger[2]["grant"]["grant_id"] == grant_id and ledger[2]["grant"]["uses"] == ["txt2img"]
    assert ledger[3]["grant_id"] == grant_id and ledger[4]["added"] == 1
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
