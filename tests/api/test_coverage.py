"""No likeness slips through at any render size (#14): the shipped default policy, real dlib, the
astronaut enrolled without a grant. The renders that used to come back 200 and signed — her face
pasted into a 2048² render, or one tile of a 4×4 collage at 4096² — are refused; pictures without
people and Grace Hopper (not enrolled) stay allowed; a render over the analysable pixel limit is 413."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import Keys, auth, check, jpeg, png, verify_log
from tests.support import faces
from tests.support.gateway import app_client, make_settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Keys]]:
    tmp = tmp_path_factory.mktemp("gw")
    policy = (REPO / "policies" / "default.yaml").read_text()
    with app_client(make_settings(tmp, policy), tmp) as made:
        yield made


@pytest.fixture(scope="module")
def enrolled(shipped: tuple[TestClient, Keys], astronaut: np.ndarray) -> str:
    client, keys = shipped
    r = client.post("/v1/subjects", headers=auth(keys.registrar), json={"display_name": "Eileen Collins"})
    assert r.status_code == 201, r.text
    sid: str = r.json()["id"]
    r = client.post(f"/v1/subjects/{sid}/faces", headers=auth(keys.registrar), data={"notice_version": "v1"},
                    files=[("media", ("a.png", png(astronaut), "image/png"))])
    assert r.status_code == 201, r.text
    return sid


@pytest.fixture
def client(shipped: tuple[TestClient, Keys]) -> Iterator[TestClient]:
    yield shipped[0]
    verify_log(shipped[0])


def release(client: TestClient, key: str, data: bytes) -> Any:
    return client.post("/v1/release", headers=auth(key), data={"request": json.dumps({"stage": "output",
                       "use": "txt2img"})}, files=[("media", ("r.jpg", data, "image/jpeg"))])


def test_enrolled_face_in_a_2048_render_is_refused(client: TestClient, shipped: tuple[TestClient, Keys],
                                                   enrolled: str) -> None:
    render = faces.canvas("coffee", 2048)
    faces.paste(render, "astronaut", 138, 900, 700)
    resp = release(client, shipped[1].generator, jpeg(render))
    assert resp.status_code == 403, resp.text
    body = resp.json()
    assert body["error"]["code"] == "policy_denied"
    states = [f["consent"]["state"] for f in body["decision"]["findings"]["faces"]]
    assert states == ["no_grant"]
    x0, y0, x1, y1 = body["decision"]["findings"]["faces"][0]["bbox"]  # full-resolution pixels
    assert faces.iou((x0, y0, x1, y1), (900, 700, 1038, 838)) > 0.5


def test_enrolled_face_as_one_tile_of_a_4096_collage_is_refused(
        client: TestClient, shipped: tuple[TestClient, Keys], enrolled: str, astronaut: np.ndarray) -> None:
    tiles = [faces.original(n) for n in ("coffee", "chelsea", "rocket", "horse", "coins")]
    render = faces.collage([astronaut, *tiles], grid=4, tile_px=1024)
    resp = release(client, shipped[1].generator, jpeg(render, quality=85))
    assert resp.status_code == 403, resp.text
    assert "no_grant" in [f["consent"]["state"] for f in resp.json()["decision"]["findings"]["faces"]]


def test_people_free_pictures_and_an_unenrolled_face_stay_allowed(
        client: TestClient, shipped: tuple[TestClient, Keys], enrolled: str) -> None:
    hopper = faces.canvas("rocket", 2048)
    faces.paste(hopper, "hopper", 60, 1200, 300)
    for render, states in ((faces.canvas("coffee", 2048), []), (faces.canvas("chelsea", 1024), []),
                           (hopper, ["no_match"])):
        record = check(client, shipped[1].generator, {"stage": "output", "use": "txt2img"}, jpeg(render)).json()
        assert record["decision"] == "allow", record["reasons"]
        assert [f["consent"]["state"] for f in record["findings"]["faces"]] == states
    assert release(client, shipped[1].generator, jpeg(faces.canvas("coffee", 2048))).status_code == 200


def test_a_turned_face_the_face_analyzer_misses_is_not_released(
        client: TestClient, shipped: tuple[TestClient, Keys], enrolled: str) -> None:
    """Turned 60° in-plane, the astronaut is beyond dlib's HOG; NudeNet's FACE_* box (a second
    detector, `consent.face_proposals`) still sees her: the face is recorded and not allowed."""
    render = faces.canvas("coffee", 1024)
    faces.paste(render, "astronaut", 160, 400, 400, angle=60)
    record = check(client, shipped[1].generator, {"stage": "output", "use": "txt2img"}, jpeg(render)).json()
    assert record["decision"] in ("review", "deny"), record["reasons"]
    (face,) = record["findings"]["faces"]
    assert face["consent"]["state"] in ("unidentified", "no_grant")
    if face["consent"]["state"] == "unidentified":
        assert "NSFW model's face detector" in face["unidentified"]["why"]
        assert any(r["rule"] == "txt2img.output.faces.unidentified" for r in record["reasons"])


def test_a_render_over_the_analysable_limit_is_413(client: TestClient, shipped: tuple[TestClient, Keys]) -> None:
    big = np.zeros((4200, 4200, 3), np.uint8)
    resp = release(client, shipped[1].generator, png(big))
    assert resp.status_code == 413, resp.text
    assert "time budget" in resp.json()["error"]["message"]


def test_nsfw_models_judge_a_large_collage_like_each_tile(
        client: TestClient, shipped: tuple[TestClient, Keys], astronaut: np.ndarray) -> None:
    """NudeNet's FACE_FEMALE finding on the astronaut (0.72 alone) must survive her being one tile of a
    4×4 collage at 4096² (benign stand-in for any label: the tiles are judged at full resolution)."""
    from classifiers.nsfw_nudenet import NudeNetClassifier
    from gateway.pipeline.check import nsfw_tiles

    tiles = [faces.original(n) for n in ("coffee", "chelsea", "rocket", "horse", "coins")]
    render = faces.collage([*tiles[:3], astronaut, *tiles[3:]], grid=4, tile_px=1024)
    working = np.asarray(faces.canvas_from(render, 1024))
    whole_only = NudeNetClassifier().classify([working])[0]["FACE_FEMALE"]
    assert whole_only < 0.3  # squeezed to 320 px the astronaut's face is ~20 px: gone (the bug)
    assert len(nsfw_tiles(render)) == 16
    record = check(client, shipped[1].generator, {"stage": "output", "use": "txt2img"}, png(render)).json()
    nudenet = [f for f in record["findings"]["nsfw"] if f["model"] == "nudenet"]
    assert len(nudenet) == 1 and nudenet[0]["scores"]["FACE_FEMALE"] > 0.5


# colorwheel is left out: NudeNet scores it BUTTOCKS_EXPOSED 0.84 at any size, with either face path
# (a false deny that predates #14; docs/faces.md)
@pytest.mark.parametrize("name", [n for n in faces.NO_PEOPLE if n != "colorwheel"])
def test_no_new_false_denies_on_packaged_pictures_without_people(
        client: TestClient, shipped: tuple[TestClient, Keys], enrolled: str, name: str) -> None:
    """Full coverage, NudeNet face proposals, near matches and NSFW tiles together: every packaged
    picture without people, at 1024² (and 2048² for the textured ones), stays allowed with no face."""
    for side in ((1024, 2048) if name in ("coins", "grass", "gravel", "page") else (1024,)):
        record = check(client, shipped[1].generator, {"stage": "output", "use": "txt2img"},
                       jpeg(faces.canvas(name, side))).json()
        assert (record["decision"], record["findings"]["faces"]) == ("allow", []), (side, record["reasons"])
