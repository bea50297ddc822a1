"""Shared, module-scoped test videos: rendered once per session, small and short."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.video.testing import make_test_video

SEGMENTS = [("astronaut", 0.0, 2.0, "pan"), ("coffee", 2.0, 3.0, None), ("grace_hopper", 3.0, 4.0, "zoom")]


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def mp4_video(video_dir: Path) -> Path:
    return make_test_video(video_dir / "clip.mp4", SEGMENTS, fps=15, size=(320, 240))


@pytest.fixture(scope="session")
def webm_video(video_dir: Path) -> Path:
    return make_test_video(video_dir / "clip.webm", SEGMENTS, fps=15, size=(320, 240), container="webm")


@pytest.fixture(scope="session")
def mov_video(video_dir: Path) -> Path:
    return make_test_video(video_dir / "clip.mov", SEGMENTS[:2], fps=10, size=(320, 240), container="mov",
                           audio_tone_hz=None)
