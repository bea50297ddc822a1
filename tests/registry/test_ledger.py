"""The consent ledger (#17.1): every registry mutation is an audit-log entry appended in the same
transaction as the change — when the append fails, the change does not happen — with the record
shapes of gateway/audit/SPEC.md §9 (never names or biometrics), queryable by kind; a registry that
predates the ledger gets one `snapshot` entry per subject and grant, once."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.audit import AuditLog
from gateway.registry.errors import RegistryUnavailable
from gateway.registry.ledger import LedgerAppendFailed
from gateway.registry.service import Registry
from tests.support.ledger import fake_face

pytestmark = pytest.mark.db


def kinds(log: AuditLog, **filters: Any) -> list[str]:
    found, _ = log.query(limit=1000, **filters)
    return [e.record["kind"] for e in found]


def test_every_mutation_is_a_ledger_entry(make_registry: Any, log: AuditLog) -> None:
    reg: Registry = make_registry()
    reg.attach_ledger(log, "operator")
    assert reg.snapshot_ledger() == 0  # empty registry: the ledger starts with its first mutation
    sid = reg.create_subject("Ada Example", ["Ada"], created_by="k1").id
    reg.enroll(sid, [fake_face(3), fake_face(3)], "notice-7", "k1")
    g = reg.grant(sid, "acme", "user-9", ["txt2img"], created_by="k1")
    reg.revoke(g.id, "k2")
    reg.revoke(g.id, "k2")  # idempotent: no second entry
    reg.add_hashes(sid, ["ab" * 32, "cd" * 32], created_by="k1")
    reg.add_hashes(sid, ["ab" * 32], created_by="k1")  # nothing new: no entry
    receipt = reg.erase(sid, "k3")
    assert kinds(log, subject=sid) == ["subject", "enrolment", "grant", "revocation", "hash", "erasure"]
    assert receipt["audit"]["index"] == 5 and receipt["subjects"] == [sid]
    records = [e.record for e in log.query(subject=sid, limit=100)[0]]
    text = json.dumps(records)
    assert "Ada" not in text and "embedding" not in text  # no names, no biometrics
    subject, enrolment, grant, revocation, hashes, erasure = records
    assert subject["protected"] is False and subject["actor"] == "k1" and subject["tenant"] == "operator"
    assert (enrolment["modality"], enrolment["image_count"], enrolment["notice_version"]) == ("face", 2, "notice-7")
    assert enrolment["templates"] == {"fake": 2}
    assert grant["grant"]["grantee_end_user"] == reg.pseudonyms.pseudonym("acme", "user-9")  # keyed hash
    assert "user-9" not in text
    assert grant["grant"] == {"grant_id": g.id, "grantee_tenant": "acme",
                              "grantee_end_user": grant["grant"]["grantee_end_user"],
                              "uses": ["txt2img"], "valid_from": grant["grant"]["valid_from"],
                              "expires_at": None}
    assert revocation["grant_id"] == g.id and revocation["actor"] == "k2"
    assert hashes["added"] == 2 and len(hashes["list_digest"]) == 64 and "ab" * 32 not in text
    assert erasure["counts"]["subjects"] == 1 and erasure["counts"]["subject_keys"] == 1
    assert kinds(log, kind="grant") == ["grant"]
    assert [e.index for e in log.query(kind="erasure")[0]] == [5]


def test_a_failed_append_undoes_the_change(make_registry: Any, log: AuditLog, main_engine: Engine) -> None:
    reg: Registry = make_registry()
    reg.attach_ledger(log, "operator")
    sid = reg.create_subject("Kept", created_by="k").id
    g = reg.grant(sid, "acme", None, ["txt2img"], created_by="k")
    size = log.head().tree_size

    def failing(call: Any) -> None:
        log.faults.fail_appends = 1
        with pytest.raises(LedgerAppendFailed) as err:
            call()
        assert isinstance(err.value, RegistryUnavailable)  # 503, not 500

    failing(lambda: reg.create_subject("Never", created_by="k"))
    assert [s.id for s in reg.list_subjects()] == [sid]
    failing(lambda: reg.grant(sid, "globex", None, ["txt2img"], created_by="k"))
    assert [x.id for x in reg.list_grants(sid)] == [g.id]
    failing(lambda: reg.revoke(g.id, "k"))
    assert reg.list_grants(sid)[0].revoked_at is None
    failing(lambda: reg.enroll(sid, [fake_face(4)], "n", "k"))
    assert reg.get_subject(sid).template_count == 0
    failing(lambda: reg.add_hashes(sid, ["ef" * 32], created_by="k"))
    assert reg.get_subject(sid).hash_count == 0
    failing(lambda: reg.erase(sid, "k"))
    with main_engine.connect() as conn:  # the rows stay (unreadable: the key is already shredded)
        assert conn.execute(sa.text("SELECT id FROM registry_subjects")).scalars().all() == [sid]
    assert log.head().tree_size == size
    receipt = reg.erase(sid, "k")  # erasing again completes the deletion, with its receipt
    assert receipt["counts"]["subjects"] == 1 and receipt["counts"]["subject_keys"] == 0
    assert kinds(log, subject=sid) == ["subject", "grant", "erasure"]


def test_snapshot_once_for_a_registry_that_predates_the_ledger(make_registry: Any, log: AuditLog) -> None:
    old: Registry = make_registry()  # no ledger: what a registry looked like before it
    a = old.create_subject("A", created_by="k").id
    b = old.create_subject("B", protected=True, created_by="k").id
    old.enroll(a, [fake_face(5)], "notice-1", "k")
    grant = old.grant(a, "acme", None, ["txt2img", "img2img"], created_by="k")
    old.revoke(grant.id, "k")
    assert log.head().tree_size == 0
    reg: Registry = make_registry()
    reg.attach_ledger(log, "operator")
    assert reg.snapshot_ledger() == 3
    assert reg.snapshot_ledger() == 0 and make_registry().snapshot_ledger() == 0  # once per database
    other: Registry = make_registry()
    other.attach_ledger(log, "operator")
    assert other.snapshot_ledger() == 0
    snaps = [e.record for e in log.query(kind="snapshot")[0]]
    assert [(r["object"], r["subjects"]) for r in snaps] == [("subject", [a]), ("subject", [b]), ("grant", [a])]
    assert snaps[0]["enrolments"][0]["notice_version"] == "notice-1" and snaps[1]["protected"] is True
    assert snaps[2]["grant"]["uses"] == ["txt2img", "img2img"] and snaps[2]["revoked_at"]
    reg.grant(b, "acme", None, ["txt2img"], created_by="k")
    assert kinds(log, subject=b) == ["snapshot", "grant"]


def test_voice_enrolment_is_a_ledger_entry_and_a_failed_append_undoes_it(make_registry: Any, log: AuditLog) -> None:
    from classifiers import builtin_registry, fake_voice_samples

    reg: Registry = make_registry()
    reg.voice_embedders["fake"] = builtin_registry().voice("fake")
    reg.attach_ledger(log, "operator")
    sid = reg.create_subject("Voice Actor", created_by="k").id
    log.faults.fail_appends = 1
    with pytest.raises(LedgerAppendFailed):
        reg.enroll_voice(sid, [fake_voice_samples(7, 4.0)], "notice-v1", "k")
    reg.enroll_voice(sid, [fake_voice_samples(7, 4.0)], "notice-v1", "k")
    voice = [e.record for e in log.query(subject=sid, kind="enrolment")[0]]
    assert len(voice) == 1  # the failed enrolment left nothing, in the registry or the log
    assert (voice[0]["modality"], voice[0]["clip_count"], voice[0]["notice_version"]) == ("voice", 1, "notice-v1")
    assert voice[0]["templates"] == {"fake": 1}
