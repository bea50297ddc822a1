"""`consentgate_client` against a real gateway in process (its transport is the TestClient's):
check, release and provenance verify as a generator; the registry as a registrar; the audit log
as an auditor (an inclusion proof re-checked here with hashlib against the signed checkpoint's
root); API keys as an admin; refusals as typed errors. Jobs' parsing against a MockTransport."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from consentgate_client import (
    ConsentgateClient,
    ConsentgateError,
    Decision,
    InclusionProof,
    PolicyDenied,
    Released,
)
from tests.support.gateway import Keys, app_client, jpeg, make_settings, png, solid, verify_audit


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Keys]]:
    tmp = tmp_path_factory.mktemp("client")
    with app_client(make_settings(tmp), tmp) as made:
        yield made
        verify_audit(made[0])


class Via(httpx.BaseTransport):
    """Route the client's requests through the in-process TestClient (its app and lifespan)."""

    def __init__(self, tc: TestClient) -> None:
        self.tc = tc

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.tc.request(request.method, str(request.url), headers=dict(request.headers),
                                 content=request.read())
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def client(tc: TestClient, key: str) -> ConsentgateClient:
    return ConsentgateClient("http://testserver", key, transport=Via(tc))


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(proof: InclusionProof, leaf: bytes) -> bytes:
    """RFC 9162 §2.1.3.2."""
    fn, sn, r = proof.index, proof.tree_size - 1, leaf
    for h in (bytes.fromhex(x) for x in proof.hashes):
        if sn == 0:
            raise AssertionError("proof too long")
        if fn & 1 or fn == sn:
            r = _node(h, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, h)
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0
    return r


def test_generator_check_release_verify(gateway: tuple[TestClient, Keys], coffee: np.ndarray) -> None:
    tc, keys = gateway
    with client(tc, keys.generator) as cg:
        decision = cg.check([png(coffee)], use="img2img", prompt="a cup")
        assert isinstance(decision, Decision) and decision.verdict == "allow" and decision.allowed
        assert decision.stage == "input" and decision.use == "img2img" and decision.audit_index is not None
        assert decision.policy is not None and len(decision.policy.digest) == 64
        assert cg.check(use="txt2img", prompt="nudify it").verdict == "deny"

        released = cg.release(jpeg(coffee), use="txt2img")
        assert isinstance(released, Released) and released.mime == "image/jpeg"
        report = cg.verify(released.data)
        assert report.c2pa.get("state") == "Trusted"
        assert [d.decision_id for d in report.decisions] == [released.decision_id]
        assert report.decisions[0].audit_index == released.audit_index

        with pytest.raises(PolicyDenied) as denied:
            cg.release(png(solid((255, 0, 0))), use="txt2img")
        assert denied.value.code == "policy_denied" and denied.value.decision_id
        with pytest.raises(ConsentgateError) as forbidden:
            cg.create_subject("Nobody")
        assert forbidden.value.status == 403 and not isinstance(forbidden.value, PolicyDenied)


def test_registrar_subject_enrol_grant_revoke(gateway: tuple[TestClient, Keys], astronaut: np.ndarray) -> None:
    tc, keys = gateway
    with client(tc, keys.registrar) as cg:
        subject = cg.create_subject("Eileen", aliases=["E. C."])
        assert subject.display_name == "Eileen" and subject.aliases == ["E. C."] and not subject.protected
        enrolment = cg.enroll(subject.id, [png(astronaut)], notice_version="notice-2026-11")
        assert enrolment.subject_id == subject.id and enrolment.notice_version == "notice-2026-11"
        assert sum(enrolment.templates.values()) >= 1
        assert cg.subject(subject.id).template_count >= 1
        grant = cg.grant(subject.id, grantee_tenant="acme", uses=["img2img"])
        assert grant.active and grant.uses == ["img2img"] and grant.grantee_tenant == "acme"
        assert [g.id for g in cg.grants(subject.id)] == [grant.id]
        revoked = cg.revoke(grant.id)
        assert not revoked.active and revoked.revoked_at
        assert subject.id in [s.id for s in cg.subjects(limit=1000)]
        with pytest.raises(ConsentgateError) as missing:
            cg.subject("0" * 32)
        assert missing.value.status == 404


def test_auditor_entries_proofs_checkpoint(gateway: tuple[TestClient, Keys], coffee: np.ndarray) -> None:
    tc, keys = gateway
    with client(tc, keys.generator) as gen:
        made = gen.check([png(coffee)], use="img2img")
    tc.app.state.gateway.audit.publish_checkpoint()  # type: ignore[attr-defined]
    with client(tc, keys.auditor) as cg:
        page = cg.audit_entries(decision="allow", use="img2img", tenant="acme", limit=1000)
        assert made.audit_index in [e.index for e in page.entries]
        assert {e.record["decision"] for e in page.entries} == {"allow"}
        assert made.audit_index is not None
        entry = cg.audit_entry(made.audit_index)
        assert entry.decision is not None and entry.decision.decision_id == made.decision_id
        checkpoint = cg.checkpoint()
        assert checkpoint.tree_size > entry.index and checkpoint.note.startswith(checkpoint.note.split("\n")[0])
        proof = cg.inclusion_proof(entry.index, checkpoint.tree_size)
        leaf = bytes.fromhex(proof.leaf_hash)
        assert root_from_inclusion(proof, leaf).hex() == checkpoint.root_hash
        tampered = hashlib.sha256(b"\x00{}").digest()
        assert root_from_inclusion(proof, tampered).hex() != checkpoint.root_hash
        consistency = cg.consistency_proof(1, checkpoint.tree_size)
        assert consistency.second == checkpoint.tree_size and consistency.second_root == checkpoint.root_hash
        first = cg.audit_entries(limit=1)
        assert len(first.entries) == 1 and first.next_cursor
        second = cg.audit_entries(limit=1, cursor=first.next_cursor)
        assert second.entries[0].index != first.entries[0].index


def test_admin_keys(gateway: tuple[TestClient, Keys]) -> None:
    tc, keys = gateway
    with client(tc, keys.admin) as cg:
        made = cg.create_key("acme", "auditor", name="console test")
        assert made.key and made.key.startswith("cg_") and made.role == "auditor"
        assert made.id in [k.id for k in cg.api_keys()]
        assert cg.revoke_key(made.id).revoked_at is not None
    with client(tc, made.key) as revoked, pytest.raises(ConsentgateError) as unauth:
        revoked.checkpoint()
    assert unauth.value.status == 401


def test_jobs_parse_against_a_fake_transport(tmp_path: Path) -> None:
    views = iter([
        {"job_id": "j1", "state": "queued", "progress": 0.0, "action": "release"},
        {"job_id": "j1", "state": "done", "progress": 1.0, "action": "release", "result_url": "/v1/jobs/j1/result",
         "decision": {"decision_id": "d1", "decision": "allow", "audit": {"index": 4}}},
    ])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            assert b'"action": "check"' in request.content and b'name="media"' in request.content
            return httpx.Response(202, json={"job_id": "j1", "state": "queued", "job": next(views)})
        if request.url.path.endswith("/result"):
            return httpx.Response(200, content=b"MP4", headers={
                "content-type": "video/mp4", "x-decision-id": "d1", "x-decision": "allow", "x-audit-index": "4"})
        return httpx.Response(200, json=next(views))

    with ConsentgateClient("http://gw.test", "k", transport=httpx.MockTransport(handler)) as cg:
        job = cg.submit_job(b"video", use="txt2video", action="check")
        assert job.job_id == "j1" and job.state == "queued" and not job.finished
        done = cg.wait_job("j1", poll_s=0)
        assert done.finished and done.decision is not None and done.decision.audit_index == 4
        result = cg.job_result("j1")
        assert isinstance(result, Released) and result.data == b"MP4" and result.audit_index == 4


def test_subject_token_uses_export_and_erasure(gateway: tuple[TestClient, Keys], grace_hopper: np.ndarray) -> None:
    """A registrar issues the person a token; with it the same client reads their grants and every use
    with its receipt (re-checked here against the checkpoint root), exports their data, asks for erasure."""
    tc, keys = gateway
    with client(tc, keys.registrar) as reg:
        subject = reg.create_subject("Grace")
        reg.enroll(subject.id, [png(grace_hopper)], notice_version="likeness-2026-1")
        grant = reg.grant(subject.id, grantee_tenant="acme", uses=["face_swap"])
        token = reg.issue_access_token(subject.id, expires_in=600)
    assert token.token.startswith("cgs_") and token.subject_id == subject.id
    with client(tc, keys.generator) as gen:
        made = gen.check([png(grace_hopper)], use="face_swap")
    assert made.allowed and [f.consent_state for f in made.faces] == ["granted"]
    tc.app.state.gateway.audit.publish_checkpoint()  # type: ignore[attr-defined]
    with client(tc, token.token) as me:
        assert [g.id for g in me.grants(subject.id)] == [grant.id]
        page = me.subject_uses(subject.id)
        (use,) = [u for u in page.uses if u.decision_id == made.decision_id]
        assert use.verdict == "allow" and grant.id in use.grant_ids and use.receipt is not None
        proof = InclusionProof.from_json(use.receipt["inclusion_proof"])
        root = root_from_inclusion(proof, bytes.fromhex(use.leaf_hash))
        assert root.hex() == use.receipt["checkpoint"]["root_hash"]
        assert [u.decision_id for u in me.grant_uses(grant.id).uses] == [made.decision_id]
        exported = me.export_subject(subject.id)
        assert grant.id in str(exported)
        assert me.request_erasure(subject.id)["state"] == "queued"
        with pytest.raises(ConsentgateError) as other:
            me.audit_entries()
        assert other.value.status in (401, 403)
