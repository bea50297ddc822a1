"""Why: video work (and long audio) takes seconds to minutes, so it runs outside the request, in a
bounded pool per replica (1–2 worker threads: a video pass already keeps two cores busy), taking
jobs from the shared database so that any replica can run any job and no two run the same one.

Each worker loops: claim the oldest queued job (`JobStore.claim`, compare-and-swap), run the
pipeline's video path — or its audio path (`gateway.pipeline.audio_job`) when the upload is audio
(the job's `input_type` is `audio/...`) —, store the result, finish the row, call the webhook.
A keeper thread renews the leases of running jobs, sweeps jobs whose owner died (lease expired →
queued again, or failed with a reason after `max_attempts` interruptions) and deletes expired jobs
and their files.

Exactly one audit entry per job: before the audit append the worker stores the result file and
notes the decision id on the row (`plan_decision`). A worker that finds a planned decision id
on a job it claims looks for that decision in the audit log first: if it was recorded, the job
is finished from the log (and the stored file) instead of being decided again.

On shutdown (`stop`) running passes are cancelled and their jobs handed back to the queue
(without counting as an attempt), so the next start — here or on another replica — runs them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from gateway.apikeys import Principal
from gateway.audit import AuditLog
from gateway.audit.reader import AuditQuery
from gateway.errors import GatewayError
from gateway.jobs.storage import JobFiles
from gateway.jobs.store import Job, JobStore
from gateway.jobs.webhook import Resolver, resolve_host, send_webhook
from gateway.pipeline.audio_job import AudioFlow
from gateway.pipeline.record import DecisionRecord
from gateway.pipeline.request import CheckRequest
from gateway.pipeline.video import VideoFlow, VideoHooks, VideoRun
from gateway.settings import Settings
from gateway.video.errors import PassCancelled, VideoError

__all__ = ["JobConfig", "JobRunner", "input_key", "result_key"]

log = logging.getLogger("consentgate.jobs")


def input_key(job_id: str) -> str:
    return f"{job_id}.in"


def result_key(job_id: str, suffix: str = "mp4") -> str:
    """Where a job's released file is stored: `<id>.mp4` for videos, `<id>.<wav|flac|mp3|m4a>` for audio."""
    return f"{job_id}.{suffix}"


@dataclass(frozen=True)
class JobConfig:
    """Job knobs, from `Settings.extra` (`jobs_workers`, `jobs_lease_s`, `jobs_poll_s`,
    `jobs_max_attempts`, `jobs_ttl_s`, `jobs_webhook_timeout_s`, `jobs_webhook_hosts`,
    `jobs_storage` = dir | db, `jobs_max_queued_per_tenant`, `jobs_max_bytes_per_tenant`)."""

    workers: int = 1
    lease_s: float = 30.0
    poll_s: float = 1.0
    max_attempts: int = 3
    ttl_s: float = 24 * 3600.0
    webhook_timeout_s: float = 5.0
    webhook_hosts: tuple[str, ...] = ()
    storage: str | None = None
    # Per-tenant caps (issue #15.9): jobs queued or running, and the bytes of their stored inputs.
    max_queued_per_tenant: int = 16
    max_bytes_per_tenant: int = 2 * 1024**3

    @classmethod
    def from_settings(cls, settings: Settings) -> JobConfig:
        extra = settings.extra
        hosts = tuple(h.strip() for h in extra.get("jobs_webhook_hosts", "").split(",") if h.strip())
        return cls(
            workers=max(1, min(int(extra.get("jobs_workers", 1)), 4)),
            lease_s=float(extra.get("jobs_lease_s", 30.0)),
            poll_s=float(extra.get("jobs_poll_s", 1.0)),
            max_attempts=max(1, int(extra.get("jobs_max_attempts", 3))),
            ttl_s=float(extra.get("jobs_ttl_s", 24 * 3600.0)),
            webhook_timeout_s=float(extra.get("jobs_webhook_timeout_s", 5.0)),
            webhook_hosts=hosts,
            storage=extra.get("jobs_storage") or None,
            max_queued_per_tenant=max(1, int(extra.get("jobs_max_queued_per_tenant", 16))),
            max_bytes_per_tenant=max(1, int(extra.get("jobs_max_bytes_per_tenant", 2 * 1024**3))),
        )


@dataclass
class _Handle:
    job_id: str
    lost: bool = False
    last_report: float = 0.0
    last_stage: str = ""


@dataclass
class JobRunner:
    """The workers and the keeper of one replica. `videos` is the pipeline's video path; `audit`
    is read to recover a job whose decision may already be recorded; `work_root` holds the
    per-job scratch folders; `audio` is the pipeline's audio path (None: audio jobs fail with a reason)."""

    videos: VideoFlow
    audit: AuditLog
    store: JobStore
    files: JobFiles
    config: JobConfig
    work_root: Path
    webhook_transport: httpx.BaseTransport | None = None
    webhook_resolve: Resolver = resolve_host  # tests resolve names without DNS
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}")
    audio: AudioFlow | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._running: dict[str, _Handle] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the workers and the keeper (once; never after `stop`)."""
        with self._lock:
            if self._threads or self._stop.is_set():
                return
            threads = [threading.Thread(target=self._work, name=f"job-worker-{i}", daemon=True)
                       for i in range(self.config.workers)]
            threads.append(threading.Thread(target=self._keep, name="job-keeper", daemon=True))
            for thread in threads:
                thread.start()
            self._threads = threads

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel running passes (their jobs go back to the queue) and join the threads."""
        with self._lock:
            self._stop.set()
            self._wake.set()
            threads, self._threads = self._threads, []
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def wake(self) -> None:
        self._wake.set()

    def restarted(self) -> JobRunner:
        """A fresh runner on the same parts (a stopped runner never starts again)."""
        return JobRunner(self.videos, self.audit, self.store, self.files, self.config, self.work_root,
                         self.webhook_transport, self.webhook_resolve, audio=self.audio)

    @property
    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)

    # -- threads -----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.store.claim(self.owner, self.config.lease_s)
            except Exception:  # noqa: BLE001 - the database blinked: try again later
                log.exception("claiming a job failed")
                job = None
            if job is None:
                self._wake.wait(self.config.poll_s)
                self._wake.clear()
                continue
            self.execute(job)

    def _keep(self) -> None:
        last_purge = 0.0
        while not self._stop.wait(max(0.05, self.config.lease_s / 3)):
            try:
                for job_id in self.running:
                    if not self.store.renew(job_id, self.owner, self.config.lease_s):
                        self._lose(job_id)
                moved = self.store.sweep(self.config.max_attempts)
                if moved:
                    log.warning("jobs whose worker stopped: %s", moved)
                    self.wake()
                if time.monotonic() - last_purge > 60:
                    last_purge = time.monotonic()
                    self.purge_expired()
            except Exception:  # noqa: BLE001 - housekeeping must not die; next round retries
                log.exception("job keeper round failed")

    def _lose(self, job_id: str) -> None:
        with self._lock:
            handle = self._running.get(job_id)
            if handle is not None:
                handle.lost = True

    def purge_expired(self) -> int:
        jobs = self.store.expired()
        for job in jobs:
            for key in (job.input_key, job.result_key):
                if key:
                    self.files.delete(key)
            self.store.delete(job.id)
        return len(jobs)

    # -- one job -----------------------------------------------------------------------------
    def execute(self, job: Job) -> None:
        handle = _Handle(job.id)
        with self._lock:
            self._running[job.id] = handle
        work = self.work_root / job.id
        try:
            if job.planned_decision_id and self._recover(job):
                return
            work.mkdir(parents=True, exist_ok=True)
            self._run(job, handle, work)
        except PassCancelled:
            if handle.lost:
                log.warning("job %s: lease lost; another worker owns it now", job.id)
            else:
                self.store.requeue(job.id, self.owner, "requeued: the gateway stopped while it ran",
                                   refund_attempt=True)
        except (GatewayError, VideoError) as exc:
            self._fail(job, exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - a job must end in a state, never hang
            log.exception("job %s failed", job.id)
            self._fail(job, "internal", f"internal error ({type(exc).__name__}); nothing was released")
        finally:
            shutil.rmtree(work, ignore_errors=True)
            with self._lock:
                self._running.pop(job.id, None)

    def _run(self, job: Job, handle: _Handle, work: Path) -> None:
        src = self.files.materialise(job.input_key, work) if job.input_key else None
        if src is None:
            self._fail(job, "input_missing", "the upload is no longer stored; resubmit it")
            return
        is_audio = (job.input_type or "").startswith("audio/")
        if is_audio and self.audio is None:
            self._fail(job, "audio_jobs_unavailable", "this gateway runs no audio jobs; nothing was released")
            return
        body = CheckRequest.model_validate_json(job.request)
        action: Literal["check", "release"] = "release" if job.action == "release" else "check"
        run = VideoRun(Principal(job.key_id, job.tenant, job.role), body, action, src, work,
                       decision_id=secrets.token_hex(16), request_id=body.request_id or job.id)
        stored: dict[str, str | None] = {"key": None}

        def before_append(record: DecisionRecord, output: Path | None) -> None:
            if output is not None:
                key = result_key(job.id, output.suffix.lstrip(".") if is_audio else "mp4")
                self.files.put_file(key, output)
                stored["key"] = key
            if handle.lost or not self.store.plan_decision(job.id, self.owner, record.decision_id,
                                                           stored["key"]):
                handle.lost = True
                raise PassCancelled("the lease was lost before the decision was recorded")

        hooks = VideoHooks(progress=lambda stage, fraction: self._progress(handle, stage, fraction),
                           should_stop=lambda: self._stop.is_set() or handle.lost,
                           before_append=before_append)
        if is_audio:
            assert self.audio is not None
            record = asyncio.run(self.audio.run(run, hooks)).record
        else:
            record = asyncio.run(self.videos.run(run, hooks)).record
        if not self.store.finish(job.id, self.owner, record=record.to_dict(), result_key=stored["key"]):
            log.warning("job %s: decided, but the lease was lost before it was marked done", job.id)
            return
        self._after(job.id)

    def _progress(self, handle: _Handle, stage: str, fraction: float) -> None:
        now = time.monotonic()
        if stage == handle.last_stage and now - handle.last_report < 0.5:
            return
        handle.last_stage, handle.last_report = stage, now
        if not self.store.progress(handle.job_id, self.owner, stage, fraction):
            handle.lost = True

    def _recover(self, job: Job) -> bool:
        """The job was interrupted after noting its decision id: finish it from the audit log
        if the decision was recorded (True); otherwise it is decided again (False)."""
        found = find_decision(self.audit, job.tenant, job.planned_decision_id or "")
        if found is None:
            if job.result_key:
                self.files.delete(job.result_key)
            return False
        if found["decision"] == "allow" and job.action == "release" and (
                not job.result_key or self.files.size(job.result_key) is None):
            self._fail(job, "result_lost", "the decision was recorded but the released file was not stored; "
                       f"resubmit the upload (decision {job.planned_decision_id})")
            return True
        if self.store.finish(job.id, self.owner, record=found, result_key=job.result_key):
            self._after(job.id)
        return True

    def _fail(self, job: Job, code: str, message: str) -> None:
        if self.store.fail(job.id, self.owner, code, message):
            self._after(job.id)

    def _after(self, job_id: str) -> None:
        """Drop the input (it is not needed any more) and call the webhook."""
        job = self.store.get(job_id)
        if job is None:
            return
        if job.input_key:
            self.files.delete(job.input_key)
        if job.webhook_url:
            payload = {"job_id": job.id, "state": job.state, "decision": job.decision,
                       "decision_id": job.decision_id}
            status = send_webhook(job.webhook_url, payload, timeout_s=self.config.webhook_timeout_s,
                                  allowed_hosts=self.config.webhook_hosts, transport=self.webhook_transport,
                                  resolve=self.webhook_resolve)
            self.store.set_webhook_status(job.id, status)


def find_decision(audit: AuditLog, tenant: str, decision_id: str) -> dict[str, Any] | None:
    """The recorded decision `decision_id` of `tenant` from the audit log (its record with the
    `audit` field filled in), or None if it was never appended."""
    entries, _ = audit.query(**AuditQuery(tenant=tenant, decision_id=decision_id, limit=1).as_kwargs())
    if not entries:
        return None
    entry = entries[0]
    record = dict(entry.record)
    leaf = entry.leaf_hash.hex() if isinstance(entry.leaf_hash, bytes) else entry.leaf_hash
    record["audit"] = {"index": entry.index, "leaf_hash": leaf, "checkpoint": None}
    return record
