"""Issue #15.9: jobs are cheap to refuse. `/v1/jobs` is rate-limited per key like check and release
(before the fix it had no limit), and each tenant has caps on jobs queued or running (429
`too_many_jobs`) and on the bytes of their stored inputs (413 `tenant_storage_full`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.jobs.conftest import upload, video_settings
from tests.support.gateway import app_client


def test_per_tenant_caps_on_queued_jobs_and_stored_bytes(tmp_path: Path, clips: dict[str, Path]) -> None:
    clip = clips["clean"].read_bytes()
    settings = video_settings(tmp_path / "a", jobs_max_queued_per_tenant="2",
                              jobs_max_bytes_per_tenant=str(len(clip) * 3))
    with app_client(settings) as (client, keys):
        client.app.state.gateway.jobs.runner.stop()  # type: ignore[attr-defined]  # jobs stay queued
        for _ in range(2):
            first = upload(client, "/v1/jobs", keys.generator, clip, {"action": "check"})
            assert first.status_code == 202, first.text
        third = upload(client, "/v1/jobs", keys.generator, clip, {"action": "check"})
        assert third.status_code == 429 and third.json()["error"]["code"] == "too_many_jobs"
        assert third.headers.get("retry-after")
        other = upload(client, "/v1/jobs", keys.other_generator, clip, {"action": "check"})
        assert other.status_code == 202  # another tenant has its own caps
    settings = video_settings(tmp_path / "b", jobs_max_bytes_per_tenant=str(len(clip) + 10))
    with app_client(settings) as (client, keys):
        client.app.state.gateway.jobs.runner.stop()  # type: ignore[attr-defined]
        assert upload(client, "/v1/jobs", keys.generator, clip, {"action": "check"}).status_code == 202
        full = upload(client, "/v1/jobs", keys.generator, clip, {"action": "check"})
        assert full.status_code == 413 and full.json()["error"]["code"] == "tenant_storage_full"


@pytest.mark.parametrize("burst", [2])
def test_jobs_are_rate_limited_like_check_and_release(tmp_path: Path, clips: dict[str, Path], burst: int) -> None:
    settings = video_settings(tmp_path).with_overrides(rate_limit_per_s=0.001, rate_limit_burst=burst)
    with app_client(settings) as (client, keys):
        client.app.state.gateway.jobs.runner.stop()  # type: ignore[attr-defined]
        clip = clips["clean"].read_bytes()
        codes = [upload(client, "/v1/jobs", keys.generator, clip, {"action": "check"}).status_code
                 for _ in range(burst + 1)]
        assert codes == [202] * burst + [429]
