"""The registry service with the deterministic fake face analyzer: subjects, enrolment gate, grants,
erasure (crypto-shredding), replicas seeing each other's changes, re-embedding, fail-closed hooks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import Engine

from classifiers.base import DetectedFace, ModelInfo
from classifiers.fake import FakeFaceAnalyzer, draw_fake_face, fake_face_embedding
from gateway.registry.crypto import SubjectCrypto
from gateway.registry.errors import (
    EnrolmentError,
    GrantNotFound,
    InvalidRequest,
    RegistryUnavailable,
    SubjectKeyNotFound,
    SubjectNotFound,
    UnknownFaceModel,
)
from gateway.registry.service import Registry

pytestmark = pytest.mark.db
NOTICE = "notice-2026-01"


def face_image(*identities: int, size: int = 80) -> np.ndarray:
    img = np.full((240, 120 + 110 * len(identities), 3), 90, np.uint8)
    for i, ident in enumerate(identities):
        draw_fake_face(img, ident, 20 + 110 * i, 60, size)
    return img


def emb(*identities: int) -> np.ndarray:
    return np.stack([fake_face_embedding(i) for i in identities])


def enrolled(reg: Registry, identity: int, name: str = "Person", **kw: object) -> str:
    sid = reg.create_subject(name, [], bool(kw.get("protected", False)), "registrar").id
    reg.enroll(sid, [face_image(identity)], NOTICE, "registrar")
    return sid


def test_subjects_are_sealed_at_rest(make_registry: Any, main_engine: Engine) -> None:
    reg = make_registry()
    s = reg.create_subject("  Zoë Saldaña ", ["Zoe S", "Zoe S"], True, "registrar")
    assert (s.display_name, s.aliases, s.protected) == ("Zoë Saldaña", ["Zoe S"], True)
    assert reg.get_subject(s.id) == s
    assert [x.id for x in reg.list_subjects()] == [s.id]
    with main_engine.connect() as conn:
        blob = conn.execute(sa.text("SELECT profile_ct FROM registry_subjects")).scalar_one()
    assert b"Salda" not in bytes(blob) and b"Zoe" not in bytes(blob)
    with pytest.raises(InvalidRequest):
        reg.create_subject("   ", [], False, "registrar")
    with pytest.raises(SubjectNotFound):
        reg.get_subject("nope")


def test_enrol_and_match(make_registry: Any) -> None:
    reg = make_registry()
    a, b = enrolled(reg, 10, "A"), enrolled(reg, 20, "B")
    res = reg.match_faces("fake", emb(10, 20, 30), threshold=0.9)
    assert [[m.subject_id for m in r] for r in res] == [[a], [b], []]
    assert res[0][0].similarity == pytest.approx(1.0, abs=1e-5)
    assert reg.get_subject(a).template_count == 1 and reg.get_subject(a).face_models == ["fake"]
    with pytest.raises(UnknownFaceModel):
        reg.match_faces("dlib", emb(10), 0.9)


def test_enrolment_gate(make_registry: Any) -> None:
    reg = make_registry(min_face_px=64)
    sid = reg.create_subject("A", [], False, "registrar").id
    cases = {
        "image_count": [],
        "no_face": [np.full((100, 100, 3), 90, np.uint8)],
        "multiple_faces": [face_image(1), face_image(1, 2)],
        "low_quality": [face_image(1, size=40)],
        "bad_image": [np.zeros((10, 10), np.uint8)],
    }
    for code, images in cases.items():
        with pytest.raises(EnrolmentError) as err:
            reg.enroll(sid, images, NOTICE, "registrar")
        assert err.value.code == code
    with pytest.raises(EnrolmentError, match="1 to 10"):
        reg.enroll(sid, [face_image(1)] * 11, NOTICE, "registrar")
    with pytest.raises(EnrolmentError, match="detection score"):
        make_registry(min_det_score=1.01).enroll(sid, [face_image(1)], NOTICE, "registrar")
    with pytest.raises(SubjectNotFound):
        reg.enroll("nope", [face_image(1)], NOTICE, "registrar")
    assert reg.get_subject(sid).template_count == 0
    ok = reg.enroll(sid, [face_image(1), face_image(1)], NOTICE, "registrar")
    assert ok.templates == {"fake": 2} and ok.images_kept and ok.notice_version == NOTICE


def test_grants_are_read_at_decision_time(make_registry: Any) -> None:
    reg, other = make_registry(), make_registry()
    sid = enrolled(reg, 3)
    g = reg.grant(sid, "acme", "user-1", ["txt2img", "img2img", "txt2img"], created_by="registrar")
    assert g.uses == ["txt2img", "img2img"] and g.revoked_at is None
    [fact] = other.grants_for([sid])[sid]
    assert (fact.id, fact.grantee_tenant, fact.grantee_end_user, fact.uses) == (
        g.id,
        "acme",
        "user-1",
        ("txt2img", "img2img"),
    )
    assert fact.valid_from.tzinfo is not None
    revoked = reg.revoke(g.id, "registrar")
    assert revoked.revoked_at is not None and reg.revoke(g.id, "someone-else").revoked_by == "registrar"
    assert other.grants_for([sid])[sid][0].revoked_at is not None  # the other replica, no waiting
    assert [x.id for x in reg.list_grants(sid)] == [g.id]
    with pytest.raises(InvalidRequest):
        reg.grant(sid, "acme", None, [], created_by="r")
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    with pytest.raises(InvalidRequest):
        reg.grant(sid, "acme", None, ["txt2img"], expires_at=now, valid_from=now + timedelta(days=1))
    with pytest.raises(SubjectNotFound):
        reg.grant("nope", "acme", None, ["txt2img"])
    with pytest.raises(GrantNotFound):
        reg.revoke("nope", "r")
    assert other.subject_facts([sid, "nope"]) == {sid: other.subject_facts([sid])[sid]}
    assert other.subject_facts([sid])[sid].protected is False


def test_erasure_makes_a_copied_template_table_undecryptable(
    make_registry: Any, main_engine: Engine, crypto: SubjectCrypto
) -> None:
    reg = make_registry()
    keep = enrolled(reg, 5, "Keep Me")
    sid = enrolled(reg, 6, "Erase Me")
    reg.grant(sid, "acme", None, ["txt2img"], created_by="registrar")
    reg.add_hashes(sid, ["ab" * 32], created_by="registrar")
    with main_engine.connect() as conn:  # "a backup": every sealed row of the subject
        queries = {
            "registry_face_templates": "SELECT embedding_ct, model, model_version"
            " FROM registry_face_templates WHERE subject_id = :s",
            "registry_enrolment_images": "SELECT image_ct"
            " FROM registry_enrolment_images WHERE subject_id = :s",
            "registry_subjects": "SELECT profile_ct FROM registry_subjects WHERE id = :s",
        }
        copied = {t: [tuple(r) for r in conn.execute(sa.text(q), {"s": sid})] for t, q in queries.items()}
    assert all(copied.values())
    receipt = reg.erase(sid, "admin-key-1")
    assert receipt["kind"] == "erasure" and receipt["subjects"] == [sid]
    assert receipt["created_at"].endswith("Z")
    assert receipt["counts"] == {
        "face_templates": 1,
        "enrolment_images": 1,
        "enrolments": 1,
        "grants": 1,
        "hashes": 1,
        "subjects": 1,
        "subject_keys": 1,
        "voice_templates": 0,
        "voice_clips": 0,
        "voice_enrolments": 0,
        "access_tokens": 0,
        "erasure_requests": 0,
    }
    assert "Erase" not in json.dumps(receipt)
    # everything the gateway still holds: the KEK, the key store (other subjects' keys), the crypto object
    blobs = [bytes(r[0]) for rows in copied.values() for r in rows]
    purposes = [f"face_template|{m}|{v}" for _, m, v in copied["registry_face_templates"]]
    for blob, purpose in zip(blobs, purposes + ["enrolment_image", "profile"], strict=True):
        with pytest.raises(SubjectKeyNotFound):
            crypto.decrypt(sid, blob, purpose)
    remaining = crypto.keystore.subject_ids()
    assert sid not in remaining and keep in remaining
    for other in remaining:
        dek = crypto._dek(other)
        for blob in blobs:
            with pytest.raises(InvalidTag):
                AESGCM(dek).decrypt(blob[1:13], blob[13:], None)
    # and the registry no longer knows the subject, by face, name, hash or grant
    assert reg.match_faces("fake", emb(6, 5), 0.9)[0] == []
    assert reg.match_faces("fake", emb(6, 5), 0.9)[1][0].subject_id == keep
    assert reg.match_names("a picture of Erase Me") == [] and reg.hash_hits(["ab" * 32], 0) == []
    assert reg.grants_for([sid]) == {} and reg.subject_facts([sid]) == {}
    with pytest.raises(SubjectNotFound):
        reg.erase(sid, "admin-key-1")


def _until(predicate: Callable[[], bool], timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_another_replica_sees_changes(make_registry: Any) -> None:
    writer, reader = make_registry(), make_registry(poll_interval_s=1.0)
    reader.warm_up()
    assert reader.match_faces("fake", emb(42), 0.9) == [[]]
    sid = writer.create_subject("Nadia Ødegård", ["Nadia"], False, "registrar").id
    writer.enroll(sid, [face_image(42)], NOTICE, "registrar")
    assert _until(lambda: bool(reader.match_faces("fake", emb(42), 0.9)[0]))
    assert _until(lambda: reader.match_names("nadia odegard") == [(sid, "nadia odegard")])
    # erasure holds on the very next request, before the reader's next poll
    writer.erase(sid, "admin")
    assert reader.match_faces("fake", emb(42), 0.9) == [[]]
    assert reader.match_names("nadia") == []


@dataclass
class RenamedFake:
    """The fake analyzer under a new weights version (a 'model change')."""

    inner: FakeFaceAnalyzer
    info: ModelInfo
    embedding_dim: int = 128

    def analyze(self, image: np.ndarray) -> list[DetectedFace]:
        return self.inner.analyze(image)


def test_reembed_after_model_change(make_registry: Any) -> None:
    reg = make_registry()
    sid = enrolled(reg, 9)
    v2 = make_registry({"fake": RenamedFake(FakeFaceAnalyzer(), ModelInfo("fake", "fake-2"))})
    assert v2.match_faces("fake", emb(9), 0.9) == [[]]  # old-version templates are not comparable
    counts = v2.reembed("fake")
    assert counts == {
        "model": "fake",
        "model_version": "fake-2",
        "subjects": 1,
        "templates": 1,
        "skipped_images": 0,
        "removed": 1,
    }
    assert v2.match_faces("fake", emb(9), 0.9)[0][0].subject_id == sid
    assert v2.get_subject(sid).template_count == 1


def test_without_kept_images_nothing_to_reembed(make_registry: Any, main_engine: Engine) -> None:
    reg = make_registry(keep_enrolment_images=False)
    enrolled(reg, 9)
    with main_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM registry_enrolment_images")).scalar_one() == 0
    assert reg.reembed("fake")["subjects"] == 0


def test_hnsw_path_through_the_service(make_registry: Any) -> None:
    reg = make_registry(hnsw_min_size=4)
    ids = {i: enrolled(reg, i) for i in range(1, 8)}
    reg.match_faces("fake", emb(1), 0.9)
    reg._face_index("fake").wait_idle()
    assert reg._face_index("fake").uses_hnsw
    res = reg.match_faces("fake", emb(*ids), 0.9)
    assert [r[0].subject_id for r in res] == list(ids.values())


def test_fault_hook_and_database_down_fail_closed(
    make_registry: Any, crypto: SubjectCrypto, tmp_path: Any
) -> None:
    reg = make_registry()
    reg.faults.unavailable = True
    calls: list[Callable[[], object]] = [
        lambda: reg.match_faces("fake", emb(1), 0.9),
        lambda: reg.match_names("x"),
        lambda: reg.hash_hits(["00" * 32], 31),
        lambda: reg.grants_for(["s"]),
        lambda: reg.subject_facts(["s"]),
        lambda: reg.create_subject("A", [], False, "r"),
    ]
    for call in calls:
        with pytest.raises(RegistryUnavailable):
            call()
    broken = Registry(
        sa.create_engine(f"sqlite:///{tmp_path}/missing/dir/db.sqlite"), crypto, {"fake": FakeFaceAnalyzer()}
    )
    with pytest.raises(RegistryUnavailable):
        broken.grants_for(["s"])
    with pytest.raises(RegistryUnavailable):
        broken.match_faces("fake", emb(1), 0.9)


def test_hash_list_by_hex(make_registry: Any) -> None:
    reg = make_registry()
    sid = reg.create_subject("A", [], False, "registrar").id
    h = "0f" * 32
    assert reg.add_hashes(sid, [h.upper(), h], created_by="registrar").added == 1
    near = "0e" + "0f" * 31  # one bit off
    assert reg.hash_hits([near], 31) == [(sid, 1)]
    assert reg.hash_hits(["f0" * 32], 31) == []
    with pytest.raises(InvalidRequest):
        reg.add_hashes(sid, ["xyz"])
    with pytest.raises(InvalidRequest, match="hasher"):
        reg.add_hashes(sid, images=[face_image(1)])
    assert reg.get_subject(sid).hash_count == 1
