"""Small videos on /v1/check and /v1/release (no job): the same decision path, MP4 out for any
input container, 413 pointing to /v1/jobs above the size or duration limit, refusals never 500,
and a failed signature that withholds the render, records a deny and drops the reservation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from gateway.provenance import WatermarkRecord, read_manifest
from gateway.video.intake import probe_video
from gateway.video.testing import make_test_video
from tests.api.conftest import Keys, auth
from tests.jobs.conftest import upload


def _gw(tc: TestClient) -> Any:
    return tc.app.state.gateway  # type: ignore[attr-defined]


def test_check_reports_when_unsafe_frames_appear(client: TestClient, keys: Keys,
                                                 clips: dict[str, Path]) -> None:
    resp = upload(client, "/v1/check", keys.generator, clips["unsafe"].read_bytes(), {"stage": "output"})
    assert resp.status_code == 200, resp.text
    record = resp.json()
    assert record["decision"] == "deny" and record["media"][0]["type"] == "video/mp4"
    unsafe = record["video"][0]["nsfw"]["fake"]["unsafe"]
    assert unsafe["ranges"] == [[1.0, 2.0]] and unsafe["max"] > 0.9
    assert record["reasons"][0]["rule"] == "txt2video.output.nsfw.fake.unsafe"
    assert "t=1.00s" in record["reasons"][0]["detail"]
    assert _gw(client).audit.entry(record["audit"]["index"]).record["decision_id"] == record["decision_id"]


def test_release_turns_webm_and_mov_into_signed_mp4(client: TestClient, keys: Keys, clips: dict[str, Path],
                                                    tmp_path: Path) -> None:
    gw = _gw(client)
    for name, audio in (("webm", "aac"), ("mov", "aac")):
        resp = upload(client, "/v1/release", keys.generator, clips[name].read_bytes(), {})
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == "video/mp4" and resp.headers["x-decision"] == "allow"
        out = tmp_path / f"{name}.mp4"
        out.write_bytes(resp.content)
        info, source = probe_video(out), probe_video(clips[name])
        assert (info.mime, info.video_codec, info.audio_codec) == ("video/mp4", "h264", audio)
        assert info.frame_count == source.frame_count and abs(info.fps - source.fps) < 1e-3
        with av.open(str(out)) as container:
            assert sum(1 for _ in container.decode(video=0)) == source.frame_count
        report = read_manifest(resp.content, "video/mp4", gw.provenance.trust_anchors_pem)
        assert report.state == "Trusted" and report.decision is not None
        assert report.decision["decision_id"] == resp.headers["x-decision-id"]


def test_deny_on_release_is_403_without_file(client: TestClient, keys: Keys, clips: dict[str, Path]) -> None:
    resp = upload(client, "/v1/release", keys.generator, clips["unsafe"].read_bytes(), {})
    assert resp.status_code == 403
    body = resp.json()
    assert body["error"]["code"] == "policy_denied" and body["decision"]["outputs"] == []
    with Session(_gw(client).engine) as session:  # the speculative mark left nothing behind
        decided = body["decision"]["decision_id"]
        rows = session.exec(select(WatermarkRecord).where(WatermarkRecord.decision_id == decided))
        assert list(rows) == []


def test_signing_failure_withholds_the_video(client: TestClient, keys: Keys, clips: dict[str, Path]) -> None:
    gw = _gw(client)
    gw.provenance.faults.sign_fails = True
    try:
        resp = upload(client, "/v1/release", keys.generator, clips["mov"].read_bytes(), {})
    finally:
        gw.provenance.faults.sign_fails = False
    assert resp.status_code == 403
    record = resp.json()["decision"]
    assert record["decision"] == "deny" and any(r["rule"] == "release.sign.failed" for r in record["reasons"])
    assert gw.audit.entry(record["audit"]["index"]).record["decision"] == "deny"
    with Session(gw.engine) as session:
        assert list(session.exec(select(WatermarkRecord).where(
            WatermarkRecord.decision_id == record["decision_id"]))) == []


def test_over_the_sync_limits_is_413_pointing_to_jobs(client: TestClient, keys: Keys, clips: dict[str, Path],
                                                      tmp_path: Path) -> None:
    long_clip = make_test_video(tmp_path / "seven.mp4", [("gray", 0.0, 7.0, None)], fps=4, size=(64, 48),
                                audio_tone_hz=None)
    big = clips["hd"].read_bytes()
    assert len(big) > 1_000_000  # the test policy's sync_max_bytes
    for data in (long_clip.read_bytes(), big):
        for path in ("/v1/check", "/v1/release"):
            resp = upload(client, path, keys.generator, data, {"stage": "output"})
            assert resp.status_code == 413, resp.text
            error = resp.json()["error"]
            assert error["code"] == "video_too_large" and "/v1/jobs" in error["message"]


def test_bad_videos_are_4xx(client: TestClient, keys: Keys, clips: dict[str, Path]) -> None:
    good = clips["clean"].read_bytes()
    mkv = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska" + bytes(64)
    for data, code in ((good[:5000], 400), (good[:64], 400), (mkv, 415)):
        for path in ("/v1/check", "/v1/release"):
            resp = upload(client, path, keys.generator, data, {"stage": "output"})
            assert resp.status_code == code, (path, resp.text)
    two = client.post("/v1/check", headers=auth(keys.generator),
                      data={"request": '{"stage": "output", "use": "txt2video"}'},
                      files=[("media", ("a", good, "video/mp4")), ("media", ("b", good, "video/mp4"))])
    assert two.status_code == 422
