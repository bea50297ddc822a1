"""/v1/jobs end to end: consent on video (timestamps, deny without a grant, allow with one), the
released MP4 (plays, C2PA-trusted, watermark survives a lower-bitrate re-encode), check jobs,
tenant isolation, 409 while not done, webhooks, refusals (400/413/415/422, never 500)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
from fastapi.testclient import TestClient

from gateway.jobs.webhook import resolve_host
from gateway.provenance import lookup_watermark, read_manifest
from gateway.video.intake import probe_video
from gateway.video.sparsemark import detect_sparse_in_file
from tests.api.conftest import Keys, auth
from tests.jobs.conftest import submit, upload, wait_done, wait_webhook


def _gw(tc: TestClient) -> Any:
    return tc.app.state.gateway  # type: ignore[attr-defined]


def _reencode(data: bytes, dst: Path, bitrate: int) -> None:
    with av.open(io.BytesIO(data), "r") as inp, av.open(str(dst), "w", format="mp4") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        vout.bit_rate = bitrate
        vout.options = {"preset": "veryfast"}
        for frame in inp.decode(vin):
            frame.pict_type = av.video.frame.PictureType.NONE
            out.mux(vout.encode(frame))
        out.mux(vout.encode(None))


def test_enrolled_face_without_grant_is_denied_with_its_times(
        client: TestClient, keys: Keys, clips: dict[str, Path], astronaut: np.ndarray) -> None:
    gw = _gw(client)
    subject = gw.registry.create_subject("Eileen Collins (test)")
    gw.registry.enroll(subject.id, [astronaut], notice_version="v1", enrolled_by="test")

    job_id = submit(client, keys.generator, clips["portraits"])
    status = wait_done(client, keys.generator, job_id)
    assert status["state"] == "done" and status["progress"] == 1.0, status
    decision = status["decision"]
    assert decision["decision"] == "deny" and status["decision_id"] == decision["decision_id"]
    refused = [f for f in decision["findings"]["faces"] if f["consent"]["state"] == "no_grant"]
    assert refused, decision["findings"]["faces"]
    assert all(2.0 <= f["t"] < 3.5 for f in refused)
    assert all(f["frame"] == round(f["t"] * 15) for f in refused)
    assert all(f["matches"] == [] for f in refused)  # a generator does not learn who matched
    summary = {s["consent"]["state"]: s["ranges"] for s in decision["video"][0]["faces"]}
    (start, end), = summary["no_grant"]
    assert 2.0 <= start < end <= 3.5 + 1 / 15 + 1e-6  # ends at the first sample without the face
    assert all(r["rule"] == "txt2video.output.consent.face" for r in decision["reasons"])
    denied = client.get(f"/v1/jobs/{job_id}/result", headers=auth(keys.generator))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "policy_denied"
    assert denied.json()["error"]["decision_id"] == decision["decision_id"]
    stored = gw.audit.entry(decision["audit"]["index"]).record
    assert stored["decision"] == "deny" and stored["findings"]["faces"][-1]["matches"]  # the log knows

    grant = gw.registry.grant(subject.id, "acme", None, ["txt2video"], None, None, "test")
    allowed = wait_done(client, keys.generator, submit(client, keys.generator, clips["portraits"]))
    assert allowed["decision"]["decision"] == "allow", allowed["decision"]["reasons"]
    assert allowed["decision"]["grant_ids"] == [grant.id]
    gw.registry.revoke(grant.id, "test")


def test_release_job_output_plays_is_signed_and_marked(client: TestClient, keys: Keys, clips: dict[str, Path],
                                                       tmp_path: Path) -> None:
    gw = _gw(client)
    source = probe_video(clips["hd"])
    status = wait_done(client, keys.generator, submit(client, keys.generator, clips["hd"]))
    assert status["decision"]["decision"] == "allow", status
    resp = client.get(status["result_url"], headers=auth(keys.generator))
    assert resp.status_code == 200 and resp.headers["content-type"] == "video/mp4"
    assert resp.headers["x-decision-id"] == status["decision_id"]
    out = tmp_path / "released.mp4"
    out.write_bytes(resp.content)
    info = probe_video(out)
    assert (info.mime, info.video_codec, info.audio_codec) == ("video/mp4", "h264", "aac")
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == source.frame_count
    assert abs(info.duration_s - source.duration_s) < 0.1 and abs(info.fps - source.fps) < 1e-3

    report = read_manifest(resp.content, "video/mp4", gw.provenance.trust_anchors_pem)
    assert report.state == "Trusted" and report.decision is not None, report.validation_errors
    assert report.decision["decision_id"] == status["decision_id"]
    assert report.decision["watermark_method"] == "video-sparse" and "c2pa.soft-binding" in report.assertions
    # 720 rows: the shifted tile (version 3; version 1's grid below 360 rows), and the soft binding says which
    assert info.height == 720 and report.decision["watermark_version"] == "3"
    assert report.soft_binding is not None and report.soft_binding["alg"] == "org.consentgate.watermark.video-sparse.v3"
    record = gw.audit.entry(int(resp.headers["x-audit-index"])).record
    wm_id = int(record["outputs"][0]["watermark_id"].split(":")[1])
    assert report.decision["watermark_id"] == wm_id
    assert record["video"][0]["output"]["frame_count"] == source.frame_count

    lower = tmp_path / "lower.mp4"
    _reencode(resp.content, lower, bitrate=int(len(resp.content) * 8 / source.duration_s / 2))
    assert lower.stat().st_size < 0.7 * len(resp.content)
    found = detect_sparse_in_file(lower)
    assert found.wm_id == wm_id, found
    from sqlmodel import Session

    with Session(gw.engine) as session:
        rows = lookup_watermark(session, "video-sparse", wm_id)
        assert [r.decision_id for r in rows] == [status["decision_id"]]


def test_check_job_answers_the_decision(client: TestClient, keys: Keys, clips: dict[str, Path]) -> None:
    job_id = submit(client, keys.generator, clips["unsafe"], action="check", prompt="a cup of coffee, a cat")
    status = wait_done(client, keys.generator, job_id)
    decision = status["decision"]
    stored = _gw(client).jobs.store.get(job_id)
    assert stored is not None and "prompt" not in json.loads(stored.request)  # no prompt kept once done
    assert decision["decision"] == "deny"
    ranges = decision["video"][0]["nsfw"]["fake"]["unsafe"]["ranges"]
    assert ranges == [[1.0, 2.0]] and decision["video"][0]["nsfw"]["fake"]["unsafe"]["max_t"] == 1.0
    flagged = [f["t"] for f in decision["findings"]["nsfw"] if "unsafe" in f["labels"]]
    assert 2 <= len(flagged) <= 3 and all(1.0 <= t < 2.0 for t in flagged)  # the cut + 1-2 grid points (random phase)
    assert decision["outputs"] == [] and decision["obligations"] == []
    result = client.get(status["result_url"], headers=auth(keys.generator))
    assert result.status_code == 200 and result.json()["decision_id"] == decision["decision_id"]


def test_jobs_are_visible_only_to_their_tenant(client: TestClient, keys: Keys,
                                               clips: dict[str, Path]) -> None:
    job_id = submit(client, keys.generator, clips["clean"], action="check")
    wait_done(client, keys.generator, job_id)
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/result"):
        other = client.get(path, headers=auth(keys.other_generator))
        assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    assert client.get(f"/v1/jobs/{job_id}", headers=auth(keys.auditor)).status_code == 403
    assert client.get(f"/v1/jobs/{'0' * 32}", headers=auth(keys.generator)).status_code == 404


def test_result_is_409_until_done(client: TestClient, keys: Keys, clips: dict[str, Path]) -> None:
    service = _gw(client).jobs
    service.runner.stop()  # nothing runs the job: it stays queued
    try:
        job_id = submit(client, keys.generator, clips["clean"])
        pending = client.get(f"/v1/jobs/{job_id}/result", headers=auth(keys.generator))
        assert pending.status_code == 409 and pending.json()["error"]["code"] == "job_not_done"
        assert client.get(f"/v1/jobs/{job_id}", headers=auth(keys.generator)).json()["state"] == "queued"
        assert service.store.fail(job_id, None, "test", "x") is False  # only running jobs can fail
    finally:
        _restart_runner(client)
    status = wait_done(client, keys.generator, job_id)
    assert status["state"] == "done"


def _restart_runner(tc: TestClient) -> None:
    service = _gw(tc).jobs
    service.runner = service.runner.restarted()
    service.runner.start()


def test_webhook_is_called_once_done(client: TestClient, keys: Keys, clips: dict[str, Path]) -> None:
    calls: list[dict[str, Any]] = []

    def hook(request: httpx.Request) -> httpx.Response:
        calls.append({"url": str(request.url), **json.loads(request.content)})
        return httpx.Response(204)

    service = _gw(client).jobs
    service.runner.webhook_transport = httpx.MockTransport(hook)
    service.runner.webhook_resolve = lambda host, port: ["93.184.215.14"]  # hooks.example, without DNS
    try:
        job_id = submit(client, keys.generator, clips["unsafe"], action="check",
                        webhook_url="https://hooks.example/consentgate")
        assert wait_done(client, keys.generator, job_id)["state"] == "done"
        # the job is done before its webhook's try is over (`pending` until then): wait for the outcome
        status = wait_webhook(client, keys.generator, job_id)
    finally:
        service.runner.webhook_transport = None
        service.runner.webhook_resolve = resolve_host
    # the connection is pinned to the address resolved once (the Host header keeps the name)
    assert calls == [{"url": "https://93.184.215.14/consentgate", "job_id": job_id, "state": "done",
                      "decision": "deny", "decision_id": status["decision_id"]}]
    assert status["webhook"] == {"status": "delivered"}


def test_unreachable_webhook_is_not_fatal(client: TestClient, keys: Keys, clips: dict[str, Path]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    service = _gw(client).jobs
    service.runner.webhook_transport = httpx.MockTransport(refuse)
    try:
        job_id = submit(client, keys.generator, clips["clean"], action="check", webhook_url="http://127.0.0.1:9/hook")
        assert wait_done(client, keys.generator, job_id)["state"] == "done"
        status = wait_webhook(client, keys.generator, job_id)
    finally:
        service.runner.webhook_transport = None
    assert status["state"] == "done" and status["webhook"] == {"status": "failed"}  # coarse: no reason shown


def test_bad_submissions_are_refused_not_500(client: TestClient, keys: Keys, clips: dict[str, Path],
                                            coffee: np.ndarray) -> None:
    from tests.api.conftest import png

    good = clips["clean"].read_bytes()
    cases = [
        (good[:6000], {}, 400, "corrupt_video"),
        (good[:100] + bytes(range(256)) * 40, {}, 400, "corrupt_video"),
        (png(coffee), {}, 415, "unsupported_media"),
        (b"hello, not a video", {}, 415, "unsupported_media"),
        (good[:32] + b"\0" * 3_100_000, {}, 413, "video_too_large"),
        (good, {"webhook_url": "ftp://example.com/x"}, 422, "invalid"),
        (good, {"webhook_url": "https://user:pw@example.com/x"}, 422, "invalid"),
        (good, {"action": "publish"}, 422, "invalid"),
    ]
    for data, request, code, error in cases:
        resp = upload(client, "/v1/jobs", keys.generator, data, request)
        assert resp.status_code == code, (request, resp.text)
        assert resp.json()["error"]["code"] == error, resp.text
    too_long = _long_clip(clips["clean"].parent / "long.mp4")
    resp = upload(client, "/v1/jobs", keys.generator, too_long.read_bytes(), {})
    assert resp.status_code == 413 and "20" in resp.json()["error"]["message"]


def _long_clip(path: Path) -> Path:
    from gateway.video.testing import make_test_video

    if not path.exists():  # 21 s of a flat frame at 2 fps: small, over the policy's 20 s
        make_test_video(path, [("gray", 0.0, 21.0, None)], fps=2, size=(64, 48), audio_tone_hz=None)
    return path
