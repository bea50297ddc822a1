"""Issue #15.9 (verify) and #15.6 (verify's numbers): `/v1/provenance/verify` takes files through exactly
the intake of `/v1/check` — bytes, pixels and the decompression-bomb guard, JPEG/PNG/WebP only, the audio
decoder, the policy's synchronous video limits and codec allowlist — and runs under the check's time budget
(503 `deadline_exceeded`, never a 500 or a request held open); and it shows a PDQ hash distance to operator
keys only. Before the fix verify handed any video or audio file (of any size the upload cap let through,
corrupt or not) to the watermark detectors and answered 200, took GIFs, had no time budget, and returned
`pdq_distance` to every key."""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.support.gateway import TEST_POLICY, Keys, app_client, auth, make_settings, png, verify_audit

PART_LIMIT = 2_000_000
MAX_PIXELS = 4_000_000
POLICY = TEST_POLICY + "video: {sync_max_bytes: 4000}\n"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Keys]]:
    tmp = tmp_path_factory.mktemp("gw")
    with app_client(make_settings(tmp, POLICY, max_upload_bytes=PART_LIMIT, max_pixels=MAX_PIXELS), tmp) as made:
        yield made
        verify_audit(made[0])


def verify(client: TestClient, key: str, data: bytes) -> tuple[int, dict[str, Any]]:
    resp = client.post("/v1/provenance/verify", headers=auth(key), files={"media": ("f", data,
                                                                                    "application/octet-stream")})
    return resp.status_code, dict(resp.json())


def png_bomb(width: int, height: int) -> bytes:
    """A PNG that declares width × height grey pixels, all zero: a few kB on the wire."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    raw = zlib.compress(b"\x00" * (width + 1) * 64, 9)  # only the first rows: the header is what is judged
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, "GIF")
    return buf.getvalue()


MP4_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def test_verify_refuses_what_check_refuses(gateway: tuple[TestClient, Keys]) -> None:
    client, keys = gateway
    cases = [
        ("over the byte limit", b"\xff\xd8\xff" + b"\x00" * (PART_LIMIT + 10), 413),
        ("a decompression bomb", png_bomb(20_000, 20_000), 413),
        ("a GIF (not on the allowlist)", gif(), 415),
        ("bytes of no known type", b"hello, not a picture" * 10, 415),
        ("a corrupt MP4", MP4_HEAD + b"\x00" * 500, 400),
        ("an MP4 over video.sync_max_bytes", MP4_HEAD + b"\x00" * 6000, 413),
        ("a corrupt WAV", b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\xff" * 40, 400),
    ]
    for what, data, status in cases:
        for key in (keys.generator, keys.auditor):
            got, body = verify(client, key, data)
            assert got == status, (what, got, body)
            assert body["error"]["code"] and body["error"]["message"], (what, body)
    # the same bytes on /v1/check: the same answers (one intake)
    for what, data, status in cases:
        resp = client.post("/v1/check", headers=auth(keys.generator),
                           data={"request": json.dumps({"stage": "output", "use": "txt2img"})},
                           files={"media": ("f", data, "application/octet-stream")})
        assert resp.status_code == status, (what, resp.text)


def test_verify_over_its_time_budget_is_503_not_500(gateway: tuple[TestClient, Keys],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    client, keys = gateway
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    real = gw.provenance.inspect

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(gw.provenance, "inspect", slow)
    monkeypatch.setattr(gw.pipeline.checker, "check_deadline_s", 0.3)
    started = time.monotonic()
    status, body = verify(client, keys.generator, png(np.full((64, 64, 3), 90, np.uint8)))
    assert status == 503 and body["error"]["code"] == "deadline_exceeded", body
    assert time.monotonic() - started < 1.4  # answered at the budget, not when the work ended


def test_only_operator_keys_see_the_pdq_distance(gateway: tuple[TestClient, Keys], coffee: np.ndarray) -> None:
    client, keys = gateway
    render = png(coffee)
    released = client.post("/v1/release", headers=auth(keys.generator),
                           data={"request": json.dumps({"use": "txt2img"})},
                           files={"media": ("r.png", render, "image/png")})
    assert released.status_code == 200, released.text
    _, mine = verify(client, keys.generator, released.content)
    assert mine["watermark"]["found"] is True and mine["watermark"]["image_matches_release"] is True
    assert "pdq_distance" not in mine["watermark"]
    _, operator = verify(client, keys.auditor, released.content)
    assert isinstance(operator["watermark"]["pdq_distance"], int)
