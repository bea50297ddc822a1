"""Why: biometric law requires the registry to forget. BIPA §15(a): destroy biometric identifiers
when the purpose of collecting them is satisfied or within 3 years of the individual's last
interaction, whichever comes first; GDPR Art. 5(1)(e) and 17: keep personal data no longer than its
purpose needs. The retention engine applies the policy's `retention:` rules to every enrolled
subject at a given time (a pure `plan`, testable with a fixed clock), carries the plan out (an
expired subject is crypto-shredded; one expired modality of a subject that keeps another loses
those rows), leaves a `retention` receipt in the consent ledger for each, and records an `expiry`
entry the first time it sees a grant past its end. A sweeper runs it on a timer in the serving
process, one replica at a time under a database lease.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlmodel import Session, col, delete, select

from gateway.registry.admin import _tombstone
from gateway.registry.core import RegistryCore
from gateway.registry.ledger import append_entry, ledger_record
from gateway.registry.models import (
    RegistryEnrolment,
    RegistryEnrolmentImage,
    RegistryFaceTemplate,
    RegistryGrant,
    RegistryLease,
    RegistrySubject,
    RegistryVoiceEnrolment,
)
from gateway.registry.records import rfc3339, to_utc
from gateway.registry.store import bump
from gateway.registry.voices import erase_voice_rows

_log = logging.getLogger(__name__)
MODALITIES = ("face", "voice")


class Rule(Protocol):
    """One modality's rule (gateway.policy.schema.RetentionRule satisfies it)."""

    @property
    def max_age_days(self) -> int | None: ...
    @property
    def max_idle_days(self) -> int | None: ...
    @property
    def purpose_end(self) -> bool: ...
    @property
    def grace_days(self) -> int: ...
    @property
    def ceiling_days(self) -> int: ...


class RetentionConfig(Protocol):
    """The policy's `retention:` section (gateway.policy.schema.RetentionSettings satisfies it)."""

    @property
    def enabled(self) -> bool: ...
    @property
    def sweep_interval_s(self) -> float: ...
    @property
    def face(self) -> Rule: ...
    @property
    def voice(self) -> Rule: ...


class Activity(Protocol):
    """What the audit log knows about a subject: when a decision last matched them, and which of
    their grants already have an `expiry` entry (composition root: backed by the audit log)."""

    def last_match(self, subject_id: str) -> datetime | None: ...

    def expiries_recorded(self, subject_id: str) -> set[str]: ...


@dataclass
class SubjectPlan:
    subject_id: str
    protected: bool
    modalities: dict[str, datetime]  # modality -> latest enrolment time
    last_interaction: datetime
    active_grants: int
    ended_grants: int
    expire: dict[str, list[str]] = field(default_factory=dict)  # modality -> reasons
    keep: dict[str, str] = field(default_factory=dict)  # modality -> why kept

    @property
    def whole(self) -> bool:
        """Every enrolled modality expires: the subject is erased (crypto-shredded)."""
        return bool(self.modalities) and set(self.expire) == set(self.modalities)

    def as_dict(self) -> dict[str, Any]:
        return {"subject_id": self.subject_id, "protected": self.protected,
                "modalities": sorted(self.modalities), "last_interaction": rfc3339(self.last_interaction),
                "active_grants": self.active_grants, "expire": self.expire, "keep": self.keep,
                "action": "erase" if self.whole else ("delete_modalities" if self.expire else "keep")}


def _grant_end(g: RegistryGrant) -> datetime | None:
    ends = [to_utc(t) for t in (g.revoked_at, g.expires_at) if t is not None]
    return min(ends) if ends else None


def judge(plan: SubjectPlan, rules: Mapping[str, Rule], now: datetime, grant_ends: Sequence[datetime]) -> None:
    """Fill `plan.expire` / `plan.keep` per modality (pure)."""
    for modality, enrolled_at in plan.modalities.items():
        rule = rules.get(modality)
        if rule is None:
            plan.keep[modality] = "no retention rule for this modality"
            continue
        reasons: list[str] = []
        if rule.max_age_days is not None and enrolled_at + timedelta(days=rule.max_age_days) <= now:
            reasons.append(f"max_age_days {rule.max_age_days} since enrolment")
        if plan.protected and not reasons:
            plan.keep[modality] = "protected subject: protection is the purpose"
            continue
        if plan.active_grants and not reasons:
            plan.keep[modality] = f"{plan.active_grants} grant(s) in force"
            continue
        if rule.max_idle_days is not None and plan.last_interaction + timedelta(days=rule.max_idle_days) <= now:
            reasons.append(f"max_idle_days {rule.max_idle_days} since the last interaction")
        if plan.last_interaction + timedelta(days=rule.ceiling_days) <= now:
            reasons.append(f"ceiling_days {rule.ceiling_days} since the last interaction (BIPA §15(a))")
        if (rule.purpose_end and plan.ended_grants and not plan.active_grants and grant_ends
                and max(grant_ends) + timedelta(days=rule.grace_days) <= now):
            reasons.append(f"purpose ended: every grant ended by {rfc3339(max(grant_ends))} "
                           f"(+{rule.grace_days} days grace)")
        if reasons:
            plan.expire[modality] = reasons
        else:
            plan.keep[modality] = "within every limit"


def plan(reg: RegistryCore, rules: Mapping[str, Rule], now: datetime, activity: Activity | None) -> list[SubjectPlan]:
    """The retention decision for every subject at `now` (reads only)."""
    now = to_utc(now)
    plans: list[SubjectPlan] = []
    with Session(reg.engine) as s:
        subjects = s.exec(select(RegistrySubject).order_by(col(RegistrySubject.created_at))).all()
        latest: dict[tuple[str, str], datetime] = {}
        for sid, at in s.exec(select(RegistryEnrolment.subject_id, RegistryEnrolment.created_at)).all():
            key = (sid, "face")
            latest[key] = max(latest.get(key, to_utc(at)), to_utc(at))
        try:
            for sid, at in s.exec(select(RegistryVoiceEnrolment.subject_id, RegistryVoiceEnrolment.created_at)).all():
                key = (sid, "voice")
                latest[key] = max(latest.get(key, to_utc(at)), to_utc(at))
        except sa.exc.DBAPIError:  # a database without the voice tables yet
            s.rollback()
        grants: dict[str, list[RegistryGrant]] = {}
        for g in s.exec(select(RegistryGrant)).all():
            grants.setdefault(g.subject_id, []).append(g)
    for subj in subjects:
        modalities = {m: at for (sid, m), at in latest.items() if sid == subj.id}
        if not modalities:
            continue  # nothing biometric to keep or forget
        mine = grants.get(subj.id, [])
        ends = [_grant_end(g) for g in mine]
        active = sum(1 for g, end in zip(mine, ends, strict=True) if (end is None or end > now)
                     and to_utc(g.valid_from) <= now)
        ended = [end for end in ends if end is not None and end <= now]
        moments = [to_utc(subj.created_at), *modalities.values(), *(to_utc(g.created_at) for g in mine)]
        seen = activity.last_match(subj.id) if activity is not None else None
        if seen is not None:
            moments.append(to_utc(seen))
        p = SubjectPlan(subj.id, subj.protected, modalities, max(moments), active, len(ended))
        judge(p, rules, now, ended)
        plans.append(p)
    return plans


def record_expiries(reg: RegistryCore, now: datetime, activity: Activity | None, actor: str) -> int:
    """Append an `expiry` entry for each grant whose `expires_at` has passed and that has none yet."""
    now = to_utc(now)
    with Session(reg.engine) as s:
        due = s.exec(select(RegistryGrant).where(col(RegistryGrant.expires_at).is_not(None))).all()
        due = [g for g in due if g.expires_at is not None and to_utc(g.expires_at) <= now]
    count = 0
    by_subject: dict[str, list[RegistryGrant]] = {}
    for g in due:
        by_subject.setdefault(g.subject_id, []).append(g)
    for sid, gs in by_subject.items():
        done = activity.expiries_recorded(sid) if activity is not None else set()
        records = [ledger_record("expiry", sid, actor, reg.ledger_tenant, grant_id=g.id,
                                 expired_at=rfc3339(to_utc(g.expires_at)))  # type: ignore[arg-type]
                   for g in gs if g.id not in done]
        if not records:
            continue
        with Session(reg.engine) as s:
            append_entry(reg.ledger, s, records)
            s.commit()
        count += len(records)
    return count


def _delete_modality(s: Session, subject_id: str, modality: str) -> dict[str, int]:
    if modality == "voice":
        return erase_voice_rows(s, subject_id)
    templates = s.exec(select(RegistryFaceTemplate.seq, RegistryFaceTemplate.model)
                       .where(RegistryFaceTemplate.subject_id == subject_id)).all()
    _tombstone(s, templates)
    counts = {}
    for label, table in (("face_templates", RegistryFaceTemplate), ("enrolment_images", RegistryEnrolmentImage),
                         ("enrolments", RegistryEnrolment)):
        counts[label] = int(s.exec(delete(table).where(col(table.subject_id) == subject_id)).rowcount)
    return counts


def apply(reg: RegistryCore, plans: Sequence[SubjectPlan], now: datetime,
          erase: Callable[[SubjectPlan], dict[str, Any]], actor: str = "retention") -> list[dict[str, Any]]:
    """Carry out the plans: a whole subject through `erase` (crypto-shred + receipt of kind
    `retention`), a single modality by deleting its rows with a `retention` entry in the same
    transaction. Returns the receipts."""
    receipts: list[dict[str, Any]] = []
    for p in plans:
        if not p.expire:
            continue
        if p.whole:
            receipts.append(erase(p))
            continue
        with Session(reg.engine) as s:
            bump(s, "faces")
            counts: dict[str, int] = {}
            for modality in p.expire:
                counts.update(_delete_modality(s, p.subject_id, modality))
            record = ledger_record("retention", p.subject_id, actor, reg.ledger_tenant,
                                   receipt_id=secrets.token_hex(16), modalities=sorted(p.expire),
                                   reasons=p.expire, counts=counts, evaluated_at=rfc3339(to_utc(now)))
            indexes = append_entry(reg.ledger, s, [record])
            s.commit()
        receipts.append({**record, "audit": {"index": indexes[0] if indexes else None}})
    return receipts


def take_lease(reg: RegistryCore, name: str, holder: str, now: datetime, ttl_s: float) -> bool:
    """Hold lease `name` until now+ttl if it is free, expired or already ours (atomic)."""
    now = to_utc(now)
    until = now + timedelta(seconds=ttl_s)
    t = RegistryLease.__table__  # type: ignore[attr-defined]
    with reg.engine.begin() as conn:
        taken = conn.execute(sa.update(t).where(t.c.name == name, sa.or_(t.c.holder == holder, t.c.expires_at <= now))
                             .values(holder=holder, expires_at=until)).rowcount
        if taken:
            return True
        try:
            with conn.begin_nested():
                conn.execute(sa.insert(t).values(name=name, holder=holder, expires_at=until))
            return True
        except sa.exc.IntegrityError:
            return False


class RetentionSweeper:
    """Runs retention every `interval()` seconds while this replica holds the `retention` lease."""

    def __init__(self, run: Callable[[datetime], Any], reg: RegistryCore, interval: Callable[[], float | None],
                 clock: Callable[[], datetime]) -> None:
        self.run, self.reg, self.interval, self.clock = run, reg, interval, clock
        self.holder = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="retention-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sweep_once(self) -> bool:
        every = self.interval()
        if every is None:
            return False
        now = self.clock()
        if not take_lease(self.reg, "retention", self.holder, now, ttl_s=max(every * 2, 60.0)):
            return False
        self.run(now)
        return True

    def _loop(self) -> None:
        while True:
            every = self.interval()
            if self._stop.wait(every if every is not None else 60.0):
                return
            try:
                self.sweep_once()
            except Exception:  # noqa: BLE001 - the sweeper must survive a bad moment of the database
                _log.exception("retention sweep failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
