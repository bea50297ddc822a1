"""Fixtures for video through the HTTP app: a gateway on a temp data dir with a video policy
(the deterministic `fake` NSFW adapter — red frames are unsafe — and the real dlib face model),
short generated clips, and helpers to submit jobs and wait for them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.settings import Settings
from gateway.video.testing import make_test_video
from tests.support.gateway import Keys, app_client, auth, make_settings
from tests.support.gateway import verify_audit as verify_log

VIDEO_POLICY = """
name: video-test
models:
  fake: {adapter: fake}
consent:
  face_model: {adapter: dlib}
  match_threshold: 0.93
video:
  sample_fps: 2.0
  max_bytes: 3000000
  max_seconds: 20
  sync_max_bytes: 1000000
  sync_max_seconds: 6
uses:
  txt2video:
    input: {}
    output:
      nsfw:
        - model: fake
          labels: {unsafe: {deny: 0.8}, suggestive: {review: 0.6}}
      faces: {unmatched: allow, without_consent: deny}
  video2video:
    input:
      faces: {unmatched: allow, without_consent: deny}
    output:
      faces: {unmatched: allow, without_consent: deny}
"""

JOB_EXTRA = {"jobs_poll_s": "0.05", "jobs_lease_s": "2", "jobs_webhook_hosts": "hooks.example,127.0.0.1"}
SIZE = (320, 240)
FPS = 15


def video_settings(tmp: Path, **extra: str) -> Settings:
    settings = make_settings(tmp, VIDEO_POLICY)
    return settings.with_overrides(extra={**JOB_EXTRA, **extra})


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Short clips: `portraits` — Grace Hopper (pan+zoom) 0–2 s, the astronaut (pan) 2–3.5 s, a
    cut to coffee 3.5–4.5 s, with a tone; `clean` — no astronaut; `unsafe` — a red scene 1–2 s;
    `hd` — 720p (the watermark's robustness is measured there); `webm`, `mov` — other containers."""
    root = tmp_path_factory.mktemp("clips")
    return {
        "portraits": make_test_video(root / "portraits.mp4", [
            ("grace_hopper", 0.0, 2.0, "pan_zoom"), ("astronaut", 2.0, 3.5, "pan"),
            ("coffee", 3.5, 4.5, None)],
            fps=FPS, size=SIZE),
        "clean": make_test_video(root / "clean.mp4", [
            ("grace_hopper", 0.0, 1.5, "zoom"), ("coffee", 1.5, 3.0, "pan")], fps=FPS, size=SIZE),
        "unsafe": make_test_video(root / "unsafe.mp4", [
            ("coffee", 0.0, 1.0, None), ("red", 1.0, 2.0, None), ("chelsea", 2.0, 3.0, "pan")],
            fps=FPS, size=SIZE, audio_tone_hz=None),
        "hd": make_test_video(root / "hd.mp4", [
            ("grace_hopper", 0.0, 1.5, "zoom"), ("coffee", 1.5, 3.0, "pan")], fps=FPS, size=(1280, 720)),
        "webm": make_test_video(root / "clean.webm", [("coffee", 0.0, 2.0, "zoom")], fps=FPS, size=SIZE,
                                container="webm"),
        "mov": make_test_video(root / "clean.mov", [("chelsea", 0.0, 2.0, "pan")], fps=FPS, size=SIZE,
                               container="mov"),
    }


@pytest.fixture(scope="module")
def video_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Keys]]:
    tmp = tmp_path_factory.mktemp("vgw")
    with app_client(video_settings(tmp), tmp) as made:
        yield made


@pytest.fixture
def client(video_gateway: tuple[TestClient, Keys]) -> Iterator[TestClient]:
    tc, _ = video_gateway
    yield tc
    verify_log(tc)


@pytest.fixture
def keys(video_gateway: tuple[TestClient, Keys]) -> Keys:
    return video_gateway[1]


def upload(tc: TestClient, path: str, key: str, data: bytes, request: dict[str, Any]) -> Any:
    return tc.post(path, headers=auth(key), data={"request": json.dumps({"use": "txt2video", **request})},
                   files=[("media", ("video", data, "application/octet-stream"))])


def submit(tc: TestClient, key: str, clip: Path, **request: Any) -> str:
    resp = upload(tc, "/v1/jobs", key, clip.read_bytes(), request)
    assert resp.status_code == 202, resp.text
    assert resp.headers["location"] == f"/v1/jobs/{resp.json()['job_id']}"
    return str(resp.json()["job_id"])


def wait_done(tc: TestClient, key: str, job_id: str, deadline_s: float = 180.0) -> dict[str, Any]:
    """Poll until the job is done or failed (the deadline only stops a hung test)."""
    end = time.monotonic() + deadline_s
    while True:
        status = tc.get(f"/v1/jobs/{job_id}", headers=auth(key))
        assert status.status_code == 200, status.text
        body: dict[str, Any] = status.json()
        if body["state"] in ("done", "failed"):
            return body
        assert time.monotonic() < end, f"job {job_id} still {body['state']} ({body['stage']})"
        time.sleep(0.1)


def wait_webhook(tc: TestClient, key: str, job_id: str, deadline_s: float = 60.0) -> dict[str, Any]:
    """Poll a done job until its webhook's try is over (`webhook.status` no longer `pending`)."""
    end = time.monotonic() + deadline_s
    while True:
        body: dict[str, Any] = tc.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
        if body["webhook"]["status"] != "pending":
            return body
        assert time.monotonic() < end, f"job {job_id}: webhook still pending"
        time.sleep(0.1)
