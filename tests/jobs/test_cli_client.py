"""`consentgate check|release|provenance verify` against a gateway (in-process here): videos go
through jobs, images through /v1/check and /v1/release; exit codes say allow (0), deny (1) or
refused (2); provenance verify: found (0), invalid (1), nothing found (2)."""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import httpx
import numpy as np
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gateway.cli.client import register
from gateway.provenance import read_manifest
from gateway.video.intake import probe_video
from tests.api.conftest import Keys, png

runner = CliRunner()


class _Borrowed:
    """Lends the test's client to a command without closing it (a TestClient's `with` would
    start and stop the app)."""

    def __init__(self, tc: TestClient) -> None:
        self.tc = tc

    def __enter__(self) -> TestClient:
        return self.tc

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None


def _cli(tc: TestClient) -> typer.Typer:
    app = typer.Typer()
    register(app, client_factory=lambda url: cast(httpx.Client, _Borrowed(tc)))
    return app


def _run(tc: TestClient, key: str, *args: str) -> Any:
    options = ["--url", "http://testserver", "--api-key", key]
    if args[0] != "provenance":
        options.append("--quiet")
    return runner.invoke(_cli(tc), [*args, *options])


def test_release_a_video_writes_a_signed_mp4(client: TestClient, keys: Keys, clips: dict[str, Path],
                                             tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    result = _run(client, keys.generator, "release", str(clips["webm"]), "--use", "txt2video",
                  "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out) and "allow" in result.stderr
    assert probe_video(out).mime == "video/mp4"
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    assert read_manifest(out.read_bytes(), "video/mp4", gw.provenance.trust_anchors_pem).state == "Trusted"
    verified = _run(client, keys.generator, "provenance", "verify", str(out))
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.stdout)
    assert report["c2pa"]["state"] == "Trusted" and report["decisions"][0]["decision"] == "allow"
    assert report["watermark"]["method"] == "video-sparse" and report["watermark"]["found"] is True
    # Re-encoded at a lower bitrate (the manifest is gone): the watermark still leads to the decision.
    from tests.jobs.test_video_jobs import _reencode

    copy = out.with_name("reencoded.mp4")
    _reencode(out.read_bytes(), copy, 400_000)
    stripped = json.loads(_run(client, keys.generator, "provenance", "verify", str(copy)).stdout)
    assert stripped["c2pa"]["state"] == "ManifestNotFound"
    assert [d["decision_id"] for d in stripped["decisions"]] == [report["decisions"][0]["decision_id"]]


def test_check_exit_codes(client: TestClient, keys: Keys, clips: dict[str, Path], coffee: np.ndarray,
                          tmp_path: Path) -> None:
    denied = _run(client, keys.generator, "check", str(clips["unsafe"]), "--use", "txt2video")
    assert denied.exit_code == 1, denied.output
    record = json.loads(denied.stdout)
    assert record["decision"] == "deny"
    assert record["video"][0]["nsfw"]["fake"]["unsafe"]["ranges"] == [[1.0, 2.0]]
    image = tmp_path / "coffee.png"
    image.write_bytes(png(coffee))
    allowed = _run(client, keys.generator, "check", str(image), "--use", "txt2video")
    assert allowed.exit_code == 0 and json.loads(allowed.stdout)["decision"] == "allow"
    bad_key = _run(client, "cg_not_a_key", "check", str(image), "--use", "txt2video")
    assert bad_key.exit_code == 2 and "401" in bad_key.stderr
    refused = _run(client, keys.generator, "release", str(clips["unsafe"]), "--use", "txt2video")
    assert refused.exit_code == 1 and "txt2video.output.nsfw.fake.unsafe" in refused.stderr


def test_provenance_verify_prints_the_report(client: TestClient, keys: Keys, clips: dict[str, Path]) -> None:
    result = _run(client, keys.generator, "provenance", "verify", str(clips["clean"]))
    assert result.exit_code == 2, result.output  # nothing found is not success (docs/cli.md)
    report = json.loads(result.stdout)
    assert report["c2pa"]["state"] == "ManifestNotFound" and report["decisions"] == []
    assert "nothing found" in result.stderr
