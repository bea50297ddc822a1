"""Retention (#17.4) with a fixed clock: enrolments past the BIPA-style ceiling, or whose purpose ended
(every grant revoked or expired, after the grace period), are crypto-shredded with a `retention`
receipt in the ledger; a subject with a grant in force, a protected subject and a recent enrolment are
kept; a dry run changes nothing; expired grants get one `expiry` entry; one sweeper at a time holds the
lease."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.audit import AuditLog
from gateway.bootstrap import AuditActivity
from gateway.policy.schema import RetentionRule, RetentionSettings
from gateway.registry.errors import SubjectNotFound
from gateway.registry.retention import RetentionSweeper, take_lease
from gateway.registry.service import Registry
from tests.support.ledger import fake_face

pytestmark = pytest.mark.db
RULES = {"face": RetentionRule(), "voice": RetentionRule()}  # the documented defaults: 3-year ceiling, purpose end


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {s["subject_id"]: s["action"] for s in report["subjects"]}


def test_retention_with_a_fixed_clock(make_registry: Any, log: AuditLog) -> None:
    reg: Registry = make_registry()
    reg.attach_ledger(log, "operator")
    base = datetime.now(UTC)

    def person(identity: int, **kw: Any) -> str:
        sid = reg.create_subject(f"P{identity}", created_by="k", **kw).id
        reg.enroll(sid, [fake_face(identity)], "notice-1", "k")
        return sid

    no_grant = person(1)
    granted = person(2)
    reg.grant(granted, "acme", None, ["txt2img"], created_by="k")
    revoked = person(3)
    reg.revoke(reg.grant(revoked, "acme", None, ["txt2img"], created_by="k").id, "k")
    protected = person(4, protected=True)
    expiring = person(5)
    expiring_grant = reg.grant(expiring, "acme", None, ["txt2img"], expires_at=base + timedelta(days=5),
                               created_by="k").id
    activity = AuditActivity(log)

    day10 = reg.retention_run(RULES, base + timedelta(days=10), activity)
    assert set(verdicts(day10).values()) == {"keep"} and day10["expiries"] == 1
    assert day10["subjects"][2]["keep"]["face"] == "within every limit"  # revoked 10 days ago: in grace
    assert reg.retention_run(RULES, base + timedelta(days=11), activity)["expiries"] == 0  # recorded once
    expiry = log.query(kind="expiry")[0]
    assert [e.record["grant_id"] for e in expiry] == [expiring_grant]

    dry = reg.retention_run(RULES, base + timedelta(days=40), activity, dry_run=True)
    assert verdicts(dry)[revoked] == "erase" and verdicts(dry)[expiring] == "erase"
    assert dry["receipts"] == [] and reg.get_subject(revoked).id == revoked  # nothing changed

    day40 = reg.retention_run(RULES, base + timedelta(days=40), activity)
    assert verdicts(day40) == {no_grant: "keep", granted: "keep", revoked: "erase", protected: "keep",
                               expiring: "erase"}
    assert verdicts(day40).keys() and {r["subjects"][0] for r in day40["receipts"]} == {revoked, expiring}
    for gone in (revoked, expiring):
        with pytest.raises(SubjectNotFound):
            reg.get_subject(gone)

    years4 = reg.retention_run(RULES, base + timedelta(days=4 * 365), activity)
    assert verdicts(years4) == {no_grant: "erase", granted: "keep", protected: "keep"}
    plan = {s["subject_id"]: s for s in years4["subjects"]}
    assert plan[granted]["keep"]["face"] == "1 grant(s) in force"
    assert plan[protected]["keep"]["face"].startswith("protected")
    assert "ceiling_days 1095" in plan[no_grant]["expire"]["face"][0]
    receipt = years4["receipts"][0]
    assert receipt["kind"] == "retention" and receipt["counts"]["subject_keys"] == 1
    assert receipt["counts"]["face_templates"] == 1 and receipt["modalities"] == ["face"]
    kinds = [e.record["kind"] for e in log.query(kind="retention")[0]]
    assert kinds == ["retention"] * 3
    assert "P1" not in str(log.query(subject=no_grant)[0][-1].record)  # receipts carry no names


def test_a_recent_match_is_an_interaction(make_registry: Any, log: AuditLog) -> None:
    reg: Registry = make_registry()
    reg.attach_ledger(log, "operator")
    base = datetime.now(UTC)
    sid = reg.create_subject("Seen", created_by="k").id
    reg.enroll(sid, [fake_face(7)], "notice-1", "k")
    seen = base + timedelta(days=3 * 365)
    log.append({"kind": "decision", "decision_id": "d1", "tenant": "acme", "subjects": [sid],
                "created_at": seen.isoformat().replace("+00:00", "Z")})
    rules = {"face": RetentionRule(max_idle_days=365)}
    kept = reg.retention_run(rules, base + timedelta(days=3 * 365 + 100), AuditActivity(log), dry_run=True)
    assert verdicts(kept) == {sid: "keep"}
    late = reg.retention_run(rules, base + timedelta(days=3 * 365 + 400), AuditActivity(log), dry_run=True)
    assert verdicts(late) == {sid: "erase"} and "max_idle_days 365" in late["subjects"][0]["expire"]["face"][0]
    aged = reg.retention_run({"face": RetentionRule(max_age_days=30)}, base + timedelta(days=31), None, dry_run=True)
    assert verdicts(aged) == {sid: "erase"}


def test_one_sweeper_at_a_time(make_registry: Any, log: AuditLog) -> None:
    reg: Registry = make_registry()
    now = datetime.now(UTC)
    assert take_lease(reg, "retention", "replica-a", now, ttl_s=60)
    assert not take_lease(reg, "retention", "replica-b", now + timedelta(seconds=30), ttl_s=60)
    assert take_lease(reg, "retention", "replica-a", now + timedelta(seconds=30), ttl_s=60)  # renewed
    assert take_lease(reg, "retention", "replica-b", now + timedelta(seconds=91), ttl_s=60)  # a lapsed lease
    runs: list[str] = []
    config = RetentionSettings(sweep_interval_s=1)
    sweepers = [RetentionSweeper(lambda t, name=name: runs.append(name), reg, lambda: config.sweep_interval_s,
                                 lambda: now + timedelta(seconds=200)) for name in ("x", "y")]
    assert [s.sweep_once() for s in sweepers] == [True, False] and runs == ["x"]
    off = RetentionSweeper(lambda t: runs.append("off"), reg, lambda: None, lambda: now)
    assert off.sweep_once() is False and runs == ["x"]
