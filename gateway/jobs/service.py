"""Why: the HTTP router, the startup hook and the tests need one object per gateway that owns
the job table, the job files and the worker pool. The composition root builds it (`open_jobs`)
and hangs it on `Gateway.jobs` (never a module global); it knows the rules the API promises: a
job is visible only to the tenant that made it; its decision is shown in that caller's view.

`JobService.start()` (called at startup by the jobs router's lifespan) hands interrupted jobs back
to the queue or fails them with a reason (`resume_interrupted`) and starts the workers.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from gateway.apikeys import Principal
from gateway.audit import AuditLog
from gateway.errors import NotFound, RateLimited, TooLarge
from gateway.jobs.runner import JobConfig, JobRunner, input_key
from gateway.jobs.storage import JobFiles, open_job_files
from gateway.jobs.store import Job, JobStore
from gateway.pipeline.audio_job import AudioFlow
from gateway.pipeline.record import caller_view
from gateway.pipeline.request import CheckRequest
from gateway.pipeline.video import VideoFlow
from gateway.settings import Settings

__all__ = ["JobService", "open_jobs"]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class JobService:
    store: JobStore
    files: JobFiles
    runner: JobRunner
    config: JobConfig
    operator_tenant: str

    def submit(self, principal: Principal, body: CheckRequest, upload: Path, media_type: str) -> Job:
        """Store the (already probed) upload and queue the job — within the tenant's caps: jobs queued
        or running (429 `too_many_jobs`) and the bytes of their stored inputs (413 `tenant_storage_full`)."""
        queued, stored = self.store.tenant_usage(principal.tenant)
        if queued >= self.config.max_queued_per_tenant:
            raise RateLimited(f"this tenant has {queued} jobs queued or running (the cap is "
                              f"{self.config.max_queued_per_tenant}); wait for some to finish",
                              code="too_many_jobs", headers={"Retry-After": "5"})
        incoming = upload.stat().st_size
        if stored + incoming > self.config.max_bytes_per_tenant:
            raise TooLarge(f"this tenant's queued uploads would take {stored + incoming} bytes (the cap is "
                           f"{self.config.max_bytes_per_tenant})", code="tenant_storage_full")
        job_id = secrets.token_hex(16)
        size = self.files.put_file(input_key(job_id), upload)
        now = self.store.clock()
        try:
            job = self.store.insert(
                id=job_id, tenant=principal.tenant, key_id=principal.key_id, role=principal.role,
                action=body.action, request=body.model_dump_json(), input_key=input_key(job_id),
                input_type=media_type, input_bytes=size, webhook_url=body.webhook_url,
                expires_at=now + self.config.ttl_s,
            )
        except BaseException:
            self.files.delete(input_key(job_id))
            raise
        self.runner.wake()
        return job

    def get_for(self, principal: Principal, job_id: str) -> Job:
        """The job, if `principal`'s tenant made it; 404 otherwise (no probing other tenants)."""
        job = self.store.get(job_id) if len(job_id) == 32 else None
        if job is None or job.tenant != principal.tenant:
            raise NotFound(f"no job {job_id}")
        return job

    def view(self, job: Job, principal: Principal) -> dict[str, Any]:
        is_operator = principal.is_operator(self.operator_tenant)
        record = job.decision_record()
        decision = caller_view(record, tenant=principal.tenant, is_operator=is_operator) if record else None
        error = {"code": job.error_code, "message": job.error_message} if job.state == "failed" else None
        out: dict[str, Any] = {
            "job_id": job.id, "action": job.action, "state": job.state, "stage": job.stage,
            "progress": round(job.progress, 4), "attempts": job.attempts,
            "created_at": _iso(job.created_at), "updated_at": _iso(job.updated_at),
            "started_at": _iso(job.started_at), "finished_at": _iso(job.finished_at),
            "expires_at": _iso(job.expires_at),
            "decision_id": job.decision_id,
            "decision": decision,
            "error": error,
            "result_url": f"/v1/jobs/{job.id}/result" if job.state == "done" else None,
        }
        if job.webhook_url:
            # the job is done before its webhook's one try is over: `pending` until then
            out["webhook"] = {"status": job.webhook_status or "pending"}
        return out


    def resume_interrupted(self) -> list[tuple[str, str]]:
        """Jobs left `running` by a gateway that stopped (their lease ran out): back to the queue, or
        failed with a reason after `max_attempts` interruptions. Jobs whose lease is still live may
        belong to another replica and are left alone; the keeper sweeps them once it runs out.
        Returns (job id, new state) per job moved."""
        return self.store.sweep(self.config.max_attempts)

    def start(self) -> None:
        self.resume_interrupted()
        self.runner.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.runner.stop(timeout)


def open_jobs(settings: Settings, engine: Engine, videos: VideoFlow, audit: AuditLog, *,
              audio: AudioFlow | None = None) -> JobService:
    """The job service of one gateway (workers not started: `start()`); without `audio`, audio jobs fail."""
    config = JobConfig.from_settings(settings)
    store = JobStore(engine, clock=_now)
    files = open_job_files(config.storage, data_dir=settings.data_dir, engine=engine,
                           database_url=settings.resolved_database_url)
    runner = JobRunner(videos, audit, store, files, config, settings.data_dir / "jobs" / "work", audio=audio)
    return JobService(store, files, runner, config, settings.operator_tenant)


def _now() -> float:
    return time.time()
