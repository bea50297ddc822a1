"""Crafted hostile media (tests/hardening/corpus.py) through every endpoint that takes media —
/v1/check, /v1/release, /v1/provenance/verify, /v1/subjects/{id}/faces and /v1/jobs — on a real
gateway over loopback: never a 5xx, never a hang (per-test timeout), a JSON error for every refusal,
bombs refused before their pixels are allocated (peak RSS growth), and a release never carries a
polyglot's payload out (the render is re-encoded from pixels)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.hardening.conftest import PeakRss, Served
from tests.hardening.corpus import NAMES, Item, build

MB = 1 << 20
# Pillow warns about the corrupt EXIF it is fed here; that is the input, not a problem.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
ENDPOINTS = ("check", "release", "verify", "faces", "jobs")
ALLOWED = {
    "check": {200, 400, 413, 415, 422},
    "release": {200, 400, 403, 413, 415, 422},
    "verify": {200, 400, 413, 415, 422},
    "faces": {201, 400, 413, 415, 422},
    "jobs": {202, 400, 413, 415, 422},
}
STTS_BUG = (
    "FFmpeg answers a huge stts entry count with ENOMEM; gateway.video.intake.decode_errors re-raises "
    "av.error.MemoryError (a subclass of MemoryError) instead of a VideoError, so the API answers 500"
)
KNOWN_BUGS: dict[tuple[str, str], str] = {}  # fixed: ENOMEM from FFmpeg is now VideoError 413


def _cases() -> list[Any]:
    out = []
    for endpoint in ENDPOINTS:
        for name in NAMES:
            marks = (
                [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[(name, endpoint)])]
                if (name, endpoint) in KNOWN_BUGS
                else []
            )
            out.append(pytest.param(endpoint, name, id=f"{endpoint}-{name}", marks=marks))
    return out


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory, coffee: np.ndarray, astronaut: np.ndarray
) -> dict[str, Item]:
    return {item.name: item for item in build(tmp_path_factory.mktemp("corpus"), coffee, astronaut)}


@pytest.fixture(scope="module")
def subject_id(served: Served) -> str:
    resp = served.post("/v1/subjects", served.keys.registrar, json={"display_name": "Hardening Subject"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def send(served: Served, endpoint: str, item: Item, subject: str) -> Any:
    files = [("media", (f"upload-{item.name}.bin", item.data, "application/octet-stream"))]
    keys = served.keys
    if endpoint == "check":
        request = (
            {"stage": "output", "use": "txt2img"}
            if item.kind == "video"
            else {"stage": "input", "use": "img2img"}
        )
        return served.post("/v1/check", keys.generator, data={"request": json.dumps(request)}, files=files)
    if endpoint == "release":
        return served.post(
            "/v1/release", keys.generator, data={"request": json.dumps({"use": "txt2img"})}, files=files
        )
    if endpoint == "verify":
        return served.post("/v1/provenance/verify", keys.generator, files=files)
    if endpoint == "faces":
        return served.post(
            f"/v1/subjects/{subject}/faces", keys.registrar, data={"notice_version": "v1"}, files=files
        )
    request = {"use": "txt2img", "action": "check"}
    return served.post("/v1/jobs", keys.generator, data={"request": json.dumps(request)}, files=files)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("endpoint", "name"), _cases())
def test_crafted_media_is_never_a_5xx(
    served: Served, corpus: dict[str, Item], subject_id: str, endpoint: str, name: str
) -> None:
    item = corpus[name]
    with PeakRss() as rss:
        resp = send(served, endpoint, item, subject_id)
    assert resp.status_code < 500, f"{endpoint} {name}: {resp.status_code} {resp.text[:300]}"
    assert resp.status_code in ALLOWED[endpoint], f"{endpoint} {name}: {resp.status_code} {resp.text[:300]}"
    if resp.status_code >= 400 and resp.status_code != 403:
        error = resp.json()["error"]
        assert error["code"] and error["message"]
    # Bombs are refused from their headers: their pixels are never allocated.
    bound = 64 * MB if item.pre_decode else 512 * MB
    assert rss.growth < bound, f"{endpoint} {name}: RSS grew by {rss.growth / MB:.0f} MB"
    if (
        item.pre_decode and endpoint != "verify"
    ):  # verify reads C2PA metadata only from non-JPEG/PNG/WebP files
        assert resp.status_code in (413, 415), resp.text
    if endpoint == "release" and resp.status_code == 200:
        assert resp.headers["X-Decision"] == "allow"
        assert resp.headers["content-type"].split(";")[0] in (
            "image/jpeg",
            "image/png",
            "image/webp",
            "video/mp4",
        )
        if item.payload is not None:
            assert item.payload not in resp.content, f"the release carried the {name} payload out"
            assert resp.content != item.data


def test_polyglots_are_accepted_as_images_and_released_clean(served: Served, corpus: dict[str, Item]) -> None:
    """Polyglots decode (their image part is real) — the point is that what leaves is re-encoded."""
    for name in ("jpeg-zip-polyglot", "png-html-polyglot"):
        item = corpus[name]
        resp = served.post(
            "/v1/release",
            served.keys.generator,
            data={"request": json.dumps({"use": "txt2img"})},
            files=[("media", ("x.bin", item.data, "application/octet-stream"))],
        )
        assert resp.status_code == 200, resp.text
        assert item.payload is not None and item.payload not in resp.content
        index = int(resp.headers["X-Audit-Index"])
        entry = served.gw.audit.entry(index).record
        assert entry["decision"] == "allow"
        assert entry["outputs"][0]["sha256"] != entry["media"][0]["sha256"]


def test_type_confused_exif_is_a_400_not_a_500(served: Served, corpus: dict[str, Item]) -> None:
    """Regression (fixed in gateway/media.py): an EXIF tag stored with the wrong type made Pillow raise
    struct.error while re-serialising EXIF after rotation, which escaped decode_image as a 500."""
    from gateway.errors import BadInput
    from gateway.media import MediaLimits, decode_image

    with pytest.raises(BadInput) as err:
        decode_image(corpus["jpeg-exif-type-confusion"].data, MediaLimits())
    assert err.value.status == 400 and err.value.code == "corrupt_media"


def test_probe_video_maps_ffmpeg_enomem_to_a_video_error(tmp_path: Path, corpus: dict[str, Item]) -> None:
    from gateway.video.intake import VideoError, probe_video

    path = tmp_path / "stts.mp4"
    path.write_bytes(corpus["mp4-stts-count-huge"].data)
    with pytest.raises(VideoError) as err:
        probe_video(path)
    assert err.value.status in (400, 413)
