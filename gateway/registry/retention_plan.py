"""Why: the retention decision (what is due at a given time) must exist once, yet two write paths carry it out:
the registry service (`gateway.registry.retention`, SQLAlchemy) and the CLI's sqlite3 path on a SQLite data dir
(`gateway.cli.retentionlite`, which must start in < 0.5 s, #22.6, so it cannot import the ORM). This module is
the part both share, pure and free of SQLAlchemy: the rules' shapes, the per-subject plan from plain rows and
`now` (`plans`), which grants are due an `expiry` entry (`due_expiries`), the ledger records' fields, and the
audit log's view that the plan reads (`LogActivity`, over any log with `query`: `AuditLog` or `SqliteLog`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from gateway.registry.records import rfc3339, to_utc

__all__ = ["MODALITIES", "Activity", "GrantRow", "LogActivity", "RetentionConfig", "Rule", "RuleValues",
           "SubjectPlan", "SubjectRow", "due_expiries", "erase_fields", "expiry_fields", "grant_end", "judge",
           "modality_fields", "plans"]

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


@dataclass(frozen=True)
class RuleValues:
    """A `Rule` as plain values (the CLI's cached copy of the policy's rule)."""

    max_age_days: int | None = None
    max_idle_days: int | None = None
    purpose_end: bool = True
    grace_days: int = 30
    ceiling_days: int = 1095


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


class GrantRow(Protocol):
    """The grant columns retention reads (`RegistryGrant` satisfies it, as does the sqlite3 path's row)."""

    @property
    def id(self) -> str: ...
    @property
    def subject_id(self) -> str: ...
    @property
    def valid_from(self) -> datetime: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime: ...


@dataclass(frozen=True)
class SubjectRow:
    id: str
    protected: bool
    created_at: datetime


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


def grant_end(g: GrantRow) -> datetime | None:
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


def plans(subjects: Sequence[SubjectRow], enrolled: Iterable[tuple[str, str, datetime]], grants: Iterable[GrantRow],
          rules: Mapping[str, Rule], now: datetime, activity: Activity | None) -> list[SubjectPlan]:
    """The retention decision at `now` for every subject (in the order given: oldest first) that has an
    enrolment. `enrolled`: (subject id, modality, enrolment time) of every enrolment."""
    now = to_utc(now)
    latest: dict[tuple[str, str], datetime] = {}
    for sid, modality, at in enrolled:
        key = (sid, modality)
        latest[key] = max(latest.get(key, to_utc(at)), to_utc(at))
    by_subject: dict[str, list[GrantRow]] = {}
    for g in grants:
        by_subject.setdefault(g.subject_id, []).append(g)
    out: list[SubjectPlan] = []
    for subj in subjects:
        modalities = {m: at for (sid, m), at in latest.items() if sid == subj.id}
        if not modalities:
            continue  # nothing biometric to keep or forget
        mine = by_subject.get(subj.id, [])
        ends = [grant_end(g) for g in mine]
        active = sum(1 for g, end in zip(mine, ends, strict=True) if (end is None or end > now)
                     and to_utc(g.valid_from) <= now)
        ended = [end for end in ends if end is not None and end <= now]
        moments = [to_utc(subj.created_at), *modalities.values(), *(to_utc(g.created_at) for g in mine)]
        seen = activity.last_match(subj.id) if activity is not None else None
        if seen is not None:
            moments.append(to_utc(seen))
        p = SubjectPlan(subj.id, subj.protected, modalities, max(moments), active, len(ended))
        judge(p, rules, now, ended)
        out.append(p)
    return out


def due_expiries(grants: Iterable[GrantRow], now: datetime) -> dict[str, list[GrantRow]]:
    """The grants whose `expires_at` has passed at `now`, by subject (in the order given)."""
    now = to_utc(now)
    by_subject: dict[str, list[GrantRow]] = {}
    for g in grants:
        if g.expires_at is not None and to_utc(g.expires_at) <= now:
            by_subject.setdefault(g.subject_id, []).append(g)
    return by_subject


def expiry_fields(g: GrantRow) -> dict[str, Any]:
    """The fields of a grant's `expiry` ledger entry."""
    assert g.expires_at is not None  # noqa: S101 - due_expiries keeps only grants with an expiry
    return {"grant_id": g.id, "expired_at": rfc3339(to_utc(g.expires_at))}


def erase_fields(p: SubjectPlan, now: datetime) -> dict[str, Any]:
    """What a whole subject's `retention` receipt carries beside the erasure's counts."""
    return {"modalities": sorted(p.expire), "reasons": p.expire, "evaluated_at": rfc3339(to_utc(now))}


def modality_fields(p: SubjectPlan, now: datetime, receipt_id: str, counts: dict[str, int]) -> dict[str, Any]:
    """The fields of the `retention` entry of a subject that loses some modalities and keeps others."""
    return {"receipt_id": receipt_id, "modalities": sorted(p.expire), "reasons": p.expire, "counts": counts,
            "evaluated_at": rfc3339(to_utc(now))}


class LogActivity:
    """The retention engine's view of the audit log (`Activity`): when a decision last matched a subject,
    and which grants already have an `expiry` entry — over `AuditLog.query` or `SqliteLog.query`."""

    def __init__(self, log: Any) -> None:
        self.log = log

    def last_match(self, subject_id: str) -> datetime | None:
        found, _ = self.log.query(subject=subject_id, kind="decision", descending=True, limit=1)
        if not found:
            return None
        created = found[0].record.get("created_at")
        try:
            return datetime.fromisoformat(str(created).replace("Z", "+00:00"))
        except ValueError:
            return None

    def expiries_recorded(self, subject_id: str) -> set[str]:
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            page, cursor = self.log.query(subject=subject_id, kind="expiry", cursor=cursor, limit=1000)
            seen.update(str(e.record.get("grant_id")) for e in page)
            if cursor is None:
                return seen
