"""Jobs survive a gateway restart: queued jobs run on the next start, jobs a dead worker left
`running` are resumed (or failed with a reason after too many interruptions), a job interrupted
after its decision was recorded is finished from the audit log (no second entry), and a graceful
shutdown hands a running job back to the queue."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from gateway.app import create_app
from tests.api.conftest import Keys, auth, verify_log
from tests.jobs.conftest import submit, video_settings, wait_done


def _gw(tc: TestClient) -> Any:
    return tc.app.state.gateway  # type: ignore[attr-defined]


def _set(tc: TestClient, job_id: str, **values: Any) -> None:
    store = _gw(tc).jobs.store
    with store.engine.begin() as conn:
        conn.execute(store.table.update().where(store.table.c.id == job_id).values(**values))


def _decisions(tc: TestClient, decision_id: str) -> int:
    entries, _ = _gw(tc).audit.query(tenant="acme", kind="decision", limit=1000)
    return sum(1 for e in entries if e.record["decision_id"] == decision_id)


def test_jobs_survive_a_restart(tmp_path: Path, clips: dict[str, Path]) -> None:
    settings = video_settings(tmp_path)
    with TestClient(create_app(settings)) as first:
        key = Keys(first).generator
        recorded = wait_done(first, key, submit(first, key, clips["clean"], action="check"))
        _gw(first).jobs.runner.stop()  # from here on nothing runs: the gateway "stops"
        queued = submit(first, key, clips["clean"])
        crashed = submit(first, key, clips["unsafe"], action="check")
        hopeless = submit(first, key, clips["clean"], action="check")
        past = time.time() - 1
        _set(first, crashed, state="running", lease_owner="dead:1:x", lease_expires_at=past, attempts=1,
             stage="analyse")
        _set(first, hopeless, state="running", lease_owner="dead:1:x", lease_expires_at=past, attempts=3)
        # interrupted after its audit append, before the row said done: finish it from the log
        _set(first, recorded["job_id"], state="running", lease_owner="dead:1:x", lease_expires_at=past,
             planned_decision_id=recorded["decision_id"], planned_at=time.time() - 5, decision=None,
             decision_id=None, record=None, audit_index=None, stage="record", attempts=1)
        assert _decisions(first, recorded["decision_id"]) == 1

    with TestClient(create_app(settings)) as second:
        key = Keys(second).generator  # a new key of the same tenant sees the tenant's jobs
        done = wait_done(second, key, queued)
        assert done["state"] == "done" and done["decision"]["decision"] == "allow"
        video = second.get(done["result_url"], headers=auth(key))
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        resumed = wait_done(second, key, crashed)
        assert resumed["state"] == "done" and resumed["attempts"] == 2
        assert resumed["decision"]["decision"] == "deny"
        failed = wait_done(second, key, hopeless)
        assert failed["state"] == "failed" and failed["error"]["code"] == "interrupted"
        assert "3 times" in failed["error"]["message"]
        refused = second.get(f"/v1/jobs/{hopeless}/result", headers=auth(key))
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "job_failed"
        again = wait_done(second, key, recorded["job_id"])
        assert again["state"] == "done" and again["decision_id"] == recorded["decision_id"]
        assert again["decision"]["audit"]["index"] == recorded["decision"]["audit"]["index"]
        assert _decisions(second, recorded["decision_id"]) == 1  # not decided twice
        files = _gw(second).jobs.files
        assert files.size(f"{queued}.in") is None  # inputs go once a job is finished
        verify_log(second)
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_shutdown_hands_a_running_job_back(tmp_path: Path, clips: dict[str, Path]) -> None:
    with TestClient(create_app(video_settings(tmp_path))) as client:
        gw = _gw(client)
        key = Keys(client).generator
        faults = gw.policies.active.runtime.nsfw["fake"].faults
        gate = threading.Event()
        faults.sleeper, faults.sleep_s = (lambda _s: gate.wait(20)), 0.01
        try:
            job_id = submit(client, key, clips["clean"], action="check")
            deadline = time.monotonic() + 60
            while gw.jobs.store.get(job_id).state != "running":  # type: ignore[union-attr]
                assert time.monotonic() < deadline
                time.sleep(0.05)
            gw.jobs.runner.stop(timeout=20)
        finally:
            gate.set()
            faults.sleep_s = 0.0
        job = gw.jobs.store.get(job_id)
        assert job is not None and job.state == "queued" and job.attempts == 0, job
        assert "stopped" in job.stage
        assert _decisions(client, job.decision_id or "-") == 0
    with TestClient(create_app(video_settings(tmp_path))) as again:
        status = wait_done(again, Keys(again).generator, job_id)
        assert status["state"] == "done" and status["attempts"] == 1


def test_lease_is_a_compare_and_swap(tmp_path: Path) -> None:
    from gateway.db import make_engine
    from gateway.jobs.store import JobStore
    from gateway.migrations import upgrade_head

    now = [1000.0]
    upgrade_head(f"sqlite:///{tmp_path / 'jobs.db'}")  # tables come from the migrations only
    store = JobStore(make_engine(f"sqlite:///{tmp_path / 'jobs.db'}"), clock=lambda: now[0])
    store.insert(id="a" * 32, tenant="t", key_id="k", role="generator", action="check", request="{}",
                 expires_at=now[0] + 60)
    first = store.claim("one", lease_s=10)
    assert first is not None and first.attempts == 1
    assert store.claim("two", lease_s=10) is None  # nothing else queued
    assert store.sweep(max_attempts=3) == []  # the lease is live
    now[0] += 11  # "one" stopped renewing
    assert store.renew("a" * 32, "two", 10) is False
    assert store.sweep(max_attempts=3) == [("a" * 32, "queued")]
    assert store.progress("a" * 32, "one", "late", 0.5) is False  # "one" lost it
    second = store.claim("two", lease_s=10)
    assert second is not None and second.attempts == 2
    record = {"decision": "allow", "decision_id": "d"}
    assert store.finish("a" * 32, "one", record=record, result_key=None) is False
    assert store.finish("a" * 32, "two", record=record, result_key=None)
    done = store.get("a" * 32)
    assert done is not None and done.state == "done" and done.lease_owner is None
    now[0] += 60
    assert [j.id for j in store.expired()] == ["a" * 32]
    with pytest.raises(sa.exc.IntegrityError):
        store.insert(id="a" * 32, tenant="t", key_id="k", role="generator", action="check", request="{}",
                     expires_at=0.0)


def test_two_replicas_never_run_the_same_job(tmp_path: Path, clips: dict[str, Path]) -> None:
    settings = video_settings(tmp_path, jobs_workers="2")
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        key = Keys(first).generator
        jobs = [submit(first if i % 2 else second, key, clips["unsafe"], action="check") for i in range(6)]
        finished = [wait_done(first, key, job_id) for job_id in jobs]
        assert all(j["state"] == "done" and j["attempts"] == 1 for j in finished)
        for job in finished:
            assert _decisions(first, job["decision_id"]) == 1
        owners = {_gw(tc).jobs.runner.owner for tc in (first, second)}
        assert len(owners) == 2
        verify_log(first)
