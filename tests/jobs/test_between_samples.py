"""Video between the samples (#14 point 5): a face the uploader hides between the regular
sampling points is still judged. The clips are built so that a sampler on the fixed 0.5 s grid
of the old code sees only coffee (checked here too, so the tests cannot pass by luck), and the
gateway must deny them with the time ranges of the hidden face."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.video.sampling import phase_from_seed, sample_frames
from gateway.video.testing import crossfade_between_samples, flash_between_samples
from tests.api.conftest import Keys, auth
from tests.jobs.conftest import submit, wait_done

FPS = 30
FLASH = (37, 38, 39)  # between the grid points 30 (1.0 s) and 45 (1.5 s)


def _gw(tc: TestClient) -> Any:
    return tc.app.state.gateway  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def attack_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("between")
    return {"crossfade": crossfade_between_samples(root / "crossfade.mp4", seconds=6.0, fps=FPS),
            "flash": flash_between_samples(root / "flash.mp4", FLASH, seconds=3.0, fps=FPS)}


@pytest.fixture
def enrolled(client: TestClient, astronaut: np.ndarray) -> Iterator[str]:
    gw = _gw(client)
    subject = gw.registry.create_subject("Eileen Collins (between samples)")
    gw.registry.enroll(subject.id, [astronaut], notice_version="v1", enrolled_by="test")
    yield subject.id
    gw.registry.erase(subject.id, "test")


def test_the_clips_hide_the_face_from_a_fixed_grid(attack_clips: dict[str, Path]) -> None:
    fixed = [s.index for s in sample_frames(attack_clips["crossfade"], fps=2.0, change_threshold=None)]
    assert fixed and all(i % 15 == 0 for i in fixed)  # the old sampler saw coffee only
    picked = [(s.index, s.reason) for s in sample_frames(attack_clips["crossfade"], fps=2.0)]
    changes = [i for i, reason in picked if reason == "change"]
    assert len(changes) >= 2 * 6 and all(i % 15 != 0 for i in changes)  # at least 2 per fade cycle
    flash = [(s.index, s.reason) for s in sample_frames(attack_clips["flash"], fps=2.0)]
    assert (FLASH[0], "cut") in flash


def test_phase_is_derived_from_the_recorded_seed() -> None:
    assert phase_from_seed(None, 0.5) == 0.0
    assert phase_from_seed("0" * 16, 0.5) == 0.0
    assert phase_from_seed("8" + "0" * 15, 0.5) == pytest.approx(0.25)
    assert 0.0 <= phase_from_seed("f" * 16, 0.5) < 0.5
    with pytest.raises(ValueError, match="hex"):
        phase_from_seed("not hex", 0.5)  # a bad fixed seed (settings extra) stops startup, not each video


def _assert_denied_in(decision: dict[str, Any], allowed_t: list[tuple[float, float]]) -> list[list[float]]:
    assert decision["decision"] == "deny", decision["reasons"]
    assert any(r["rule"] == "txt2video.output.consent.face" for r in decision["reasons"])
    refused = [f for f in decision["findings"]["faces"] if f["consent"]["state"] == "no_grant"]
    assert refused
    assert all(any(a - 1e-3 <= f["t"] <= b + 1e-3 for a, b in allowed_t) for f in refused), refused
    summary = {s["consent"]["state"]: s["ranges"] for s in decision["video"][0]["faces"]}
    ranges: list[list[float]] = summary["no_grant"]
    assert ranges and all(any(a - 1e-3 <= r0 < r1 <= b + 0.51 for a, b in allowed_t) for r0, r1 in ranges)
    sampling = decision["video"][0]["sampling"]
    assert sampling["phase_s"] == pytest.approx(phase_from_seed(sampling["seed"], 0.5), abs=1e-6)
    return ranges


def test_crossfade_between_grid_points_is_denied_with_time_ranges(
        client: TestClient, keys: Keys, attack_clips: dict[str, Path], enrolled: str) -> None:
    job_id = submit(client, keys.generator, attack_clips["crossfade"], action="release")
    status = wait_done(client, keys.generator, job_id)
    assert status["state"] == "done", status
    # the face is visible (alpha > 0) on frames 1..13 of every 15-frame cycle
    visible = [((15 * k + 1) / FPS, (15 * k + 13) / FPS) for k in range(12)]
    ranges = _assert_denied_in(status["decision"], visible)
    assert len(ranges) >= 6  # one range per cycle, not one blur over the clip
    assert status["decision"]["video"][0]["sampling"]["changes"] >= 12
    denied = client.get(f"/v1/jobs/{job_id}/result", headers=auth(keys.generator))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "policy_denied"


def test_face_on_three_frames_only_is_denied(client: TestClient, keys: Keys, attack_clips: dict[str, Path],
                                             enrolled: str) -> None:
    status = wait_done(client, keys.generator, submit(client, keys.generator, attack_clips["flash"],
                                                      action="release"))
    assert status["state"] == "done", status
    ranges = _assert_denied_in(status["decision"], [(FLASH[0] / FPS, FLASH[-1] / FPS)])
    (start, end), = ranges
    assert start == pytest.approx(FLASH[0] / FPS, abs=1e-3) and end <= (FLASH[-1] + 1) / FPS + 1e-3


def test_seeds_differ_per_job_and_the_clean_cover_is_allowed(client: TestClient, keys: Keys,
                                                             tmp_path: Path) -> None:
    clean = flash_between_samples(tmp_path / "clean.mp4", (), seconds=1.0, fps=FPS)
    seeds = set()
    for _ in range(2):
        status = wait_done(client, keys.generator, submit(client, keys.generator, clean))
        assert status["decision"]["decision"] == "allow", status["decision"]["reasons"]
        seeds.add(status["decision"]["video"][0]["sampling"]["seed"])
    assert len(seeds) == 2


def test_release_path_samples_at_least_the_policy_minimum() -> None:
    from gateway.pipeline.video import sampling_fps
    from gateway.policy.schema import VideoSettings

    lax = VideoSettings(sample_fps=0.5)
    assert sampling_fps(lax, "output") == 2.0 and sampling_fps(lax, "input") == 0.5
    assert sampling_fps(VideoSettings(sample_fps=4.0), "output") == 4.0
    assert sampling_fps(VideoSettings(sample_fps=0.5, release_min_sample_fps=1.0), "output") == 1.0
