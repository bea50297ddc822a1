"""Why: biometric law requires the registry to forget. BIPA §15(a): destroy biometric identifiers
when the purpose of collecting them is satisfied or within 3 years of the individual's last
interaction, whichever comes first; GDPR Art. 5(1)(e) and 17: keep personal data no longer than its
purpose needs. The retention engine applies the policy's `retention:` rules to every enrolled
subject at a given time (a pure `plan`, testable with a fixed clock), carries the plan out (an
expired subject is crypto-shredded; one expired modality of a subject that keeps another loses
those rows), leaves a `retention` receipt in the consent ledger for each, and records an `expiry`
entry the first time it sees a grant past its end. A sweeper runs it on a timer in the serving
process, one replica at a time under a database lease. The decision itself (what is due, given the rows
and `now`) lives in `retention_plan`, which the CLI's sqlite3 path (`gateway.cli.retentionlite`) shares.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

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
from gateway.registry.records import to_utc
from gateway.registry.retention_plan import (
    MODALITIES,
    Activity,
    RetentionConfig,
    Rule,
    SubjectPlan,
    SubjectRow,
    due_expiries,
    expiry_fields,
    grant_end,
    judge,
    modality_fields,
    plans,
)
from gateway.registry.store import bump
from gateway.registry.voices import erase_voice_rows

_log = logging.getLogger(__name__)
__all__ = ["MODALITIES", "Activity", "RetentionConfig", "RetentionSweeper", "Rule", "SubjectPlan", "apply", "grant_end",
           "judge", "plan", "record_expiries", "take_lease"]


def plan(reg: RegistryCore, rules: Mapping[str, Rule], now: datetime, activity: Activity | None) -> list[SubjectPlan]:
    """The retention decision for every subject at `now` (reads only; the decision is
    `retention_plan.plans`, which the CLI's sqlite3 path shares)."""
    with Session(reg.engine) as s:
        subjects = [SubjectRow(subj.id, subj.protected, subj.created_at) for subj in
                    s.exec(select(RegistrySubject).order_by(col(RegistrySubject.created_at))).all()]
        enrolled = [(sid, "face", at) for sid, at in
                    s.exec(select(RegistryEnrolment.subject_id, RegistryEnrolment.created_at)).all()]
        try:
            enrolled += [(sid, "voice", at) for sid, at in
                         s.exec(select(RegistryVoiceEnrolment.subject_id, RegistryVoiceEnrolment.created_at)).all()]
        except sa.exc.DBAPIError:  # a database without the voice tables yet
            s.rollback()
        grants = list(s.exec(select(RegistryGrant)).all())
    return plans(subjects, enrolled, grants, rules, now, activity)


def record_expiries(reg: RegistryCore, now: datetime, activity: Activity | None, actor: str) -> int:
    """Append an `expiry` entry for each grant whose `expires_at` has passed and that has none yet."""
    with Session(reg.engine) as s:
        due = s.exec(select(RegistryGrant).where(col(RegistryGrant.expires_at).is_not(None))).all()
    count = 0
    for sid, gs in due_expiries(due, now).items():
        done = activity.expiries_recorded(sid) if activity is not None else set()
        records = [ledger_record("expiry", sid, actor, reg.ledger_tenant, **expiry_fields(g))
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
                                   **modality_fields(p, now, secrets.token_hex(16), counts))
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
