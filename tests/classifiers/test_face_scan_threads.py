"""Why: a Ray face replica that reserves one CPU must scan on one thread (its `threads` option is
the replica's `num_cpus`), while the adapter built without options keeps splitting a large first
pass over two; the faces found must not depend on it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("dlib")

import classifiers.face_dlib as face_dlib  # noqa: E402

REAL_POOL = face_dlib.ThreadPoolExecutor


class CountingPool:
    made = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        CountingPool.made += 1
        self._inner = REAL_POOL(*args, **kwargs)

    def __enter__(self) -> Any:
        return self._inner.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._inner.__exit__(*exc)


def _frame() -> np.ndarray:
    import cv2
    import skimage.data

    frame = np.full((720, 1280, 3), 90, dtype=np.uint8)  # a 720p video frame, the astronaut in it
    frame[:, 280:1000] = cv2.resize(np.ascontiguousarray(skimage.data.astronaut()), (720, 720))
    return frame


def _boxes(model: Any, img: np.ndarray) -> list[tuple[int, int, int, int]]:
    return sorted(f.bbox for f in model.analyze(img))


def test_threads_option_bounds_the_first_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    img = _frame()
    one = face_dlib.DlibFaceAnalyzer({"threads": 1})
    default = face_dlib.DlibFaceAnalyzer()
    two = face_dlib.DlibFaceAnalyzer({"threads": 2})
    monkeypatch.setattr(face_dlib, "ThreadPoolExecutor", CountingPool)
    CountingPool.made = 0
    single = _boxes(one, img)
    assert CountingPool.made == 0, "a one-thread analyzer started a second scanning thread"
    split = _boxes(default, img)
    assert CountingPool.made == 1, "the default analyzer no longer splits a 720p first pass"
    assert _boxes(two, img) == split
    assert CountingPool.made == 2
    assert single == split and single, "the faces found depend on the thread count"
