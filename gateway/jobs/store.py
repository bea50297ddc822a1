"""Why: jobs must survive a restart and must not run twice when several replicas share one
database. Their state lives in the `jobs` table, and every transition is a compare-and-swap
(`UPDATE ... WHERE state = ... AND lease_owner = ...`, checked by its row count), which works the
same on SQLite and PostgreSQL:

    queued ──claim──► running ──finish──► done | failed
       ▲                 │ (lease expired: the owner died)
       └──── sweep ──────┘  … or failed once `max_attempts` claims were interrupted

A worker that claims a job holds a lease (`lease_expires_at`) and renews it while it works; a
replica that dies stops renewing, and `sweep` hands the job back to the queue (or fails it with a
reason once it was interrupted `max_attempts` times). A worker that finds its lease gone stops.
Times are seconds since the epoch (floats), compared in SQL.

The table is created by the Alembic migrations (gateway/migrations, 0003), like every other table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

__all__ = ["Job", "JobStore", "STATES"]

STATES = ("queued", "running", "done", "failed")


def jobs_table(metadata: sa.MetaData, name: str = "jobs") -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False, index=True),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("stage", sa.Text, nullable=False, default=""),
        sa.Column("progress", sa.Float, nullable=False, default=0.0),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("input_key", sa.String(48)),
        sa.Column("input_type", sa.Text),
        sa.Column("input_bytes", sa.BigInteger),
        sa.Column("result_key", sa.String(48)),
        sa.Column("planned_decision_id", sa.String(32)),
        sa.Column("planned_at", sa.Float),
        sa.Column("decision", sa.String(16)),
        sa.Column("decision_id", sa.String(32)),
        sa.Column("audit_index", sa.BigInteger),
        sa.Column("record", sa.Text),
        sa.Column("error_code", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("webhook_url", sa.Text),
        sa.Column("webhook_status", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_expires_at", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("expires_at", sa.Float, nullable=False, index=True),
    )


@dataclass(frozen=True)
class Job:
    id: str
    tenant: str
    key_id: str
    role: str
    action: str
    state: str
    stage: str
    progress: float
    request: str
    input_key: str | None
    input_type: str | None
    input_bytes: int | None
    result_key: str | None
    planned_decision_id: str | None
    planned_at: float | None
    decision: str | None
    decision_id: str | None
    audit_index: int | None
    record: str | None
    error_code: str | None
    error_message: str | None
    webhook_url: str | None
    webhook_status: str | None
    attempts: int
    lease_owner: str | None
    lease_expires_at: float | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    expires_at: float

    def decision_record(self) -> dict[str, Any] | None:
        return json.loads(self.record) if self.record else None


class JobStore:
    def __init__(self, engine: Engine, *, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.clock = clock
        self.metadata = sa.MetaData()
        self.table = jobs_table(self.metadata)

    # -- reads -------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self.table).where(self.table.c.id == job_id)).first()
        return Job(**row._mapping) if row is not None else None

    def in_state(self, state: str, limit: int = 100) -> list[Job]:
        t = self.table
        with self.engine.connect() as conn:
            query = sa.select(t).where(t.c.state == state).order_by(t.c.created_at).limit(limit)
            rows = conn.execute(query).all()
        return [Job(**r._mapping) for r in rows]

    def tenant_usage(self, tenant: str) -> tuple[int, int]:
        """(jobs queued or running, bytes of their stored inputs) of `tenant`: what its caps count."""
        t = self.table
        with self.engine.connect() as conn:
            count, size = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(t.c.input_bytes), 0))
                .where(t.c.tenant == tenant, t.c.state.in_(("queued", "running")))
            ).one()
        return int(count), int(size)

    # -- transitions -------------------------------------------------------------------------
    def insert(self, **values: Any) -> Job:
        now = self.clock()
        values = {"state": "queued", "stage": "queued", "progress": 0.0, "attempts": 0, "created_at": now,
                  "updated_at": now, **values}
        with self.engine.begin() as conn:
            conn.execute(self.table.insert().values(**values))
        job = self.get(values["id"])
        assert job is not None
        return job

    def _swap(self, where: list[Any], **values: Any) -> bool:
        values.setdefault("updated_at", self.clock())
        with self.engine.begin() as conn:
            result = conn.execute(self.table.update().where(*where).values(**values))
        return int(result.rowcount or 0) == 1

    def _owned(self, job_id: str, owner: str) -> list[Any]:
        t = self.table
        return [t.c.id == job_id, t.c.state == "running", t.c.lease_owner == owner]

    def claim(self, owner: str, lease_s: float) -> Job | None:
        """Take the oldest queued job (compare-and-swap; another replica may win the race)."""
        t = self.table
        for _ in range(5):
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(t.c.id).where(t.c.state == "queued").order_by(t.c.created_at)
                                   .limit(1)).first()
            if row is None:
                return None
            now = self.clock()
            if self._swap([t.c.id == row.id, t.c.state == "queued"], state="running", lease_owner=owner,
                          lease_expires_at=now + lease_s, attempts=t.c.attempts + 1, started_at=now,
                          stage="starting"):
                return self.get(row.id)
        return None

    def renew(self, job_id: str, owner: str, lease_s: float) -> bool:
        return self._swap(self._owned(job_id, owner), lease_expires_at=self.clock() + lease_s)

    def progress(self, job_id: str, owner: str, stage: str, fraction: float) -> bool:
        return self._swap(self._owned(job_id, owner), stage=stage, progress=max(0.0, min(1.0, fraction)))

    def plan_decision(self, job_id: str, owner: str, decision_id: str, result_key: str | None) -> bool:
        """Note the decision id (and the stored result) before the audit append, so a restart can
        tell whether the append happened (see `runner.recover`)."""
        return self._swap(self._owned(job_id, owner), planned_decision_id=decision_id,
                          planned_at=self.clock(), result_key=result_key, stage="record")

    def _running(self, job_id: str, owner: str | None) -> list[Any]:
        """Owned by `owner`, or (owner None: recovery at startup) running under any lease."""
        t = self.table
        return self._owned(job_id, owner) if owner is not None else [t.c.id == job_id, t.c.state == "running"]

    def finish(self, job_id: str, owner: str | None, *, record: dict[str, Any],
               result_key: str | None) -> bool:
        audit_index = record.get("audit", {}).get("index")
        return self._swap(self._running(job_id, owner), state="done", stage="done", progress=1.0,
                          decision=record["decision"], decision_id=record["decision_id"],
                          audit_index=audit_index, request=self._forget_prompt(job_id),
                          record=json.dumps(record, sort_keys=True), result_key=result_key, lease_owner=None,
                          lease_expires_at=None, finished_at=self.clock())

    def fail(self, job_id: str, owner: str | None, code: str, message: str) -> bool:
        return self._swap(self._running(job_id, owner), state="failed", stage="failed", error_code=code,
                          error_message=message[:2000], lease_owner=None, lease_expires_at=None,
                          finished_at=self.clock(), request=self._forget_prompt(job_id))

    def _forget_prompt(self, job_id: str) -> str:
        """The stored request without its prompt: once a job has ended, the gateway keeps no
        prompt text outside the audit log (where the policy decides whether it is kept)."""
        job = self.get(job_id)
        request = json.loads(job.request) if job is not None else {}
        request.pop("prompt", None)
        return json.dumps(request)

    def requeue(self, job_id: str, owner: str, stage: str, *, refund_attempt: bool) -> bool:
        t = self.table
        extra = {"attempts": t.c.attempts - 1} if refund_attempt else {}
        return self._swap(self._owned(job_id, owner), state="queued", stage=stage, progress=0.0,
                          lease_owner=None, lease_expires_at=None, **extra)

    def set_webhook_status(self, job_id: str, status: str) -> None:
        self._swap([self.table.c.id == job_id], webhook_status=status[:500])

    def sweep(self, max_attempts: int) -> list[tuple[str, str]]:
        """Jobs whose lease ran out (their worker died): back to the queue, or failed with a
        reason after `max_attempts` claims. Returns (job id, new state) for each one moved."""
        t = self.table
        now = self.clock()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.id, t.c.attempts, t.c.lease_owner, t.c.lease_expires_at)
                                .where(t.c.state == "running", sa.or_(t.c.lease_expires_at.is_(None),
                                                                      t.c.lease_expires_at < now))).all()
        moved = []
        for row in rows:
            where = [t.c.id == row.id, t.c.state == "running"]
            where.append(t.c.lease_owner == row.lease_owner if row.lease_owner is not None
                         else t.c.lease_owner.is_(None))
            if row.attempts >= max_attempts:
                ok = self._swap(where, state="failed", stage="failed", error_code="interrupted",
                                error_message=f"the gateway stopped {row.attempts} times while this job ran; "
                                "giving up (resubmit it, or try a shorter video)",
                                lease_owner=None, lease_expires_at=None, finished_at=now)
                state = "failed"
            else:
                ok = self._swap(where, state="queued", stage="requeued after an interruption", progress=0.0,
                                lease_owner=None, lease_expires_at=None)
                state = "queued"
            if ok:
                moved.append((row.id, state))
        return moved

    def expired(self, limit: int = 100) -> list[Job]:
        """Finished jobs past `expires_at` (their files and rows can go)."""
        t = self.table
        with self.engine.connect() as conn:
            finished = t.c.state.in_(("done", "failed"))
            due = t.c.expires_at < self.clock()
            rows = conn.execute(sa.select(t).where(due, finished).limit(limit)).all()
        return [Job(**r._mapping) for r in rows]

    def delete(self, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.table.delete().where(self.table.c.id == job_id))
