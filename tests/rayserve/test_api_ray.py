"""Why: the ray backend through the whole gateway (CONSENTGATE_MODEL_BACKEND=ray): checks and
releases made on the model workers, /readyz and decisions when the cluster becomes unreachable
(a TCP relay in front of the Serve proxy is cut, as a partition or a dead head looks to a gateway),
readiness coming back by itself, and a model replica SIGKILLed during API load — with the audit
log holding exactly one verified entry per decision answered, and nothing released on a deny."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from classifiers import draw_fake_face
from gateway.app import create_app
from tests.api.conftest import Keys, auth, check, make_settings, png, solid, verify_log
from tests.rayserve.conftest import Forwarder

pytestmark = pytest.mark.ray

RAY_POLICY = """
name: raytest
models:
  fake: {adapter: fake}
  opennsfw: {adapter: opennsfw}
consent:
  face_model: {adapter: fake}
  match_threshold: 0.9
uses:
  txt2img:
    input: {}
    output:
      nsfw:
        - model: fake
          labels: {unsafe: {deny: 0.8}, suggestive: {review: 0.6}}
        - model: opennsfw
          labels: {nsfw: {deny: 0.8, review: 0.5}}
      faces: {unmatched: allow, without_consent: deny}
"""
OUTPUT = {"stage": "output", "use": "txt2img"}


@pytest.fixture
def relay(ray_cluster: Any) -> Iterator[Forwarder]:
    fwd = Forwarder(ray_cluster.serve_port)
    yield fwd
    fwd.close()


def _gateway(tmp: Path, address: str) -> TestClient:
    settings = make_settings(tmp, RAY_POLICY, model_backend="ray", ray_address=address, model_timeout_s=20.0)
    return TestClient(create_app(settings))


def _entries(tc: TestClient) -> int:
    return int(tc.app.state.gateway.audit.head().tree_size)  # type: ignore[attr-defined]


def _with_face(identity: int) -> np.ndarray:
    image = solid((10, 200, 10), 256)
    draw_fake_face(image, identity=identity, x=60, y=60, size=64)
    return image


def test_checks_and_releases_run_on_the_workers(tmp_path: Path, relay: Forwarder, serve_client: Any) -> None:
    with _gateway(tmp_path, relay.url) as tc:
        keys = Keys(tc)
        ready = tc.get("/readyz", headers=auth(keys.admin)).json()
        assert ready["ready"] and ready["model_backend"]["problems"] == []
        before = serve_client.info("nsfw")["stats"]["items"]
        record = check(tc, keys.generator, OUTPUT, png(solid((230, 20, 20)))).json()
        assert record["decision"] == "deny"
        nsfw = {f["model"]: f for f in record["findings"]["nsfw"]}
        assert nsfw["fake"]["scores"]["unsafe"] == pytest.approx(0.99)
        from classifiers import builtin_registry

        assert nsfw["opennsfw"]["model_version"] == builtin_registry().nsfw("opennsfw").info.version
        assert serve_client.info("nsfw")["stats"]["items"] >= before + 2  # both models ran on the worker
        face_record = check(tc, keys.generator, OUTPUT, png(_with_face(42))).json()
        assert [f["bbox"] for f in face_record["findings"]["faces"]] == [[60, 60, 124, 124]]
        resp = tc.post("/v1/release", headers=auth(keys.generator), data={"request": '{"use": "txt2img"}'},
                       files=[("media", ("g.png", png(solid((10, 200, 10))), "image/png"))])
        assert resp.status_code == 200 and resp.headers["x-decision"] == "allow"
        assert resp.headers["x-request-id"]
        text = tc.get("/metrics").text
        assert 'consentgate_ray_round_trip_seconds_count{family="nsfw",op="classify",outcome="ok"}' in text
        for stage in ("decode", "models", "watermark", "sign", "audit"):
            assert f'consentgate_stage_seconds_count{{stage="{stage}"}}' in text
        verify_log(tc)


def test_ray_unreachable_means_not_ready_and_deny(tmp_path: Path, relay: Forwarder) -> None:
    with _gateway(tmp_path, relay.url) as tc:
        keys = Keys(tc)
        assert tc.get("/readyz").status_code == 200
        start = _entries(tc)
        relay.cut()
        ready = tc.get("/readyz", headers=auth(keys.admin))
        assert ready.status_code == 503
        problems = ready.json()["model_backend"]["problems"]
        assert {p.split(":")[0] for p in problems} == {"nsfw", "face", "text"}
        record = check(tc, keys.generator, OUTPUT, png(solid((10, 200, 10)))).json()
        assert record["decision"] == "deny"
        failed = [r for r in record["reasons"] if r["rule"].endswith(".failed")]
        assert failed and any("on Ray Serve" in r["detail"] for r in failed)
        assert {f["model"] for f in record["findings"]["failures"]} >= {"fake", "opennsfw"}
        resp = tc.post("/v1/release", headers=auth(keys.generator), data={"request": '{"use": "txt2img"}'},
                       files=[("media", ("g.png", png(solid((10, 200, 10))), "image/png"))])
        assert resp.status_code == 403 and resp.json()["decision"]["decision"] == "deny"
        assert "image" not in resp.headers.get("content-type", "")  # nothing released
        assert _entries(tc) == start + 2  # both denials recorded
        relay.restore()
        assert tc.get("/readyz").status_code == 200
        assert check(tc, keys.generator, OUTPUT, png(solid((10, 200, 10)))).json()["decision"] == "allow"
        verify_log(tc)


def test_unreachable_at_start_becomes_ready_by_itself(tmp_path: Path, relay: Forwarder) -> None:
    relay.cut()
    with _gateway(tmp_path, relay.url) as tc:
        admin = Keys(tc).admin
        body = tc.get("/readyz", headers=auth(admin))
        assert body.status_code == 503 and body.json()["policy"]["name"] is None
        assert "unreachable" in (body.json()["last_error"] or "")
        relay.restore()
        deadline = time.monotonic() + 30
        while tc.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert tc.get("/readyz").status_code == 200


def test_killed_replica_during_api_load_fails_closed_and_loses_nothing(
    tmp_path: Path, relay: Forwarder, ray_cluster: Any, serve_client: Any
) -> None:
    with _gateway(tmp_path, relay.url) as tc:
        keys = Keys(tc)
        start = _entries(tc)
        image = png(_with_face(7))
        answers: list[dict[str, Any]] = []
        lock = threading.Lock()
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                resp = check(tc, keys.generator, OUTPUT, image)
                with lock:
                    answers.append({"status": resp.status_code, **(resp.json() if resp.status_code == 200 else {})})

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        import os
        import signal

        os.kill(ray_cluster.replica_pids("face")[0], signal.SIGKILL)
        time.sleep(3.0)
        stop.set()
        for t in threads:
            t.join(timeout=120)
        assert answers and all(a["status"] == 200 for a in answers)
        for a in answers:
            if a["decision"] == "deny":  # fail closed, naming the stage and the model
                assert any(r["rule"].endswith(".failed") and "face" in r["detail"] for r in a["reasons"])
            else:
                assert a["decision"] == "allow" and [f["bbox"] for f in a["findings"]["faces"]] == [[60, 60, 124, 124]]
        assert _entries(tc) == start + len(answers)  # one entry per decision answered, none lost
        verify_log(tc)
    _wait_until_face_replicas_serve(ray_cluster, serve_client)


def _wait_until_face_replicas_serve(ray_cluster: Any, serve_client: Any, timeout_s: float = 120.0) -> None:
    """After the SIGKILL: both face replica processes are back *and* the deployment answers
    (eight `info` calls in a row, which the proxy spreads over the replicas), so the next test
    does not meet a replica that is still starting."""
    deadline = time.monotonic() + timeout_s
    while len(ray_cluster.replica_pids("face")) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    in_a_row = 0
    while in_a_row < 8 and time.monotonic() < deadline:
        in_a_row = in_a_row + 1 if not serve_client.problems(["face"], timeout_s=5.0) else 0
        if in_a_row == 0:
            time.sleep(0.5)
    assert in_a_row >= 8, "the face deployment did not come back within 120 s of the SIGKILL"


VIDEO_POLICY = """
name: rayvideo
models:
  opennsfw: {adapter: opennsfw}
consent:
  face_model: {adapter: dlib}
  match_threshold: 0.93
uses:
  txt2video:
    input: {}
    output:
      nsfw:
        - model: opennsfw
          labels: {nsfw: {deny: 0.8, review: 0.5}}
      faces: {unmatched: allow, without_consent: deny}
"""


def _failed_closed(record: dict[str, Any]) -> bool:
    """A deny whose every reason is a named model failure (the `.failed` rules)."""
    denies = [r for r in record.get("reasons") or [] if r.get("outcome") == "deny"]
    return record.get("decision") == "deny" and bool(denies) and all(
        str(r.get("rule", "")).endswith(".failed") for r in denies)


def test_video_frames_fan_out_to_the_workers_with_the_in_process_findings(
    tmp_path: Path, relay: Forwarder, serve_client: Any
) -> None:
    from gateway.video.testing import make_test_video

    clip = make_test_video(tmp_path / "clip.mp4", [("astronaut", 0.0, 3.0, "pan"), ("coffee", 3.0, 4.0, None)],
                           fps=10, size=(320, 240), audio_tone_hz=None).read_bytes()
    request = {"stage": "output", "use": "txt2video"}
    records = {}
    face_calls = 0.0
    for backend in ("inprocess", "ray"):
        extra: dict[str, Any] = {"model_backend": "ray", "ray_address": relay.url} if backend == "ray" else {}
        settings = make_settings(tmp_path / backend, VIDEO_POLICY, model_timeout_s=60.0, **extra)
        settings = settings.with_overrides(extra={**settings.extra, "video_sampling_seed": "0"})  # same frames
        with TestClient(create_app(settings)) as tc:
            keys = Keys(tc)
            resp = check(tc, keys.generator, request, clip)
            assert resp.status_code == 200, resp.text
            if backend == "ray" and _failed_closed(resp.json()):
                # A model call that failed on the cluster (a replica restarted by the previous
                # test's SIGKILL or by a health check on a loaded machine) is a correct fail-closed
                # deny naming the model; what this test compares is the findings, so once more.
                print("ray video check failed closed, once more:", resp.json()["reasons"])
                resp = check(tc, keys.generator, request, clip)
                assert resp.status_code == 200, resp.text
            records[backend] = resp.json()
            if backend == "ray":
                import re

                text = tc.get("/metrics").text
                pattern = (r'consentgate_ray_round_trip_seconds_count\{family="face",op="(?:detect|analyze)",'
                           r'outcome="ok"\} (\S+)')
                face_calls = sum(float(v) for v in re.findall(pattern, text))
            verify_log(tc)
    local, remote = records["inprocess"], records["ray"]
    assert local["decision"] == "allow", local["reasons"]
    assert remote["decision"] == "allow", remote["reasons"]
    faces = [(f.get("frame"), f["bbox"]) for f in local["findings"]["faces"]]
    assert faces and faces == [(f.get("frame"), f["bbox"]) for f in remote["findings"]["faces"]]
    nsfw = [(f["media_index"], round(f["scores"]["nsfw"], 4)) for f in local["findings"]["nsfw"]]
    assert nsfw == [(f["media_index"], round(f["scores"]["nsfw"], 4)) for f in remote["findings"]["nsfw"]]
    frames = {f.get("frame") for f in local["findings"]["faces"]}
    assert face_calls >= len(frames)  # every sampled frame's face call went to the face deployment
