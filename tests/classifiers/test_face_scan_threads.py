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


def test_the_level_queue_hands_out_each_level_once_most_costly_first() -> None:
    import threading

    levels = [(1.0, 5), (1.12, 8), (0.78, 8), (0.55, 8), (0.38, 8), (0.27, 8)]
    cost = [6.8, 5.3, 2.6, 1.3, 0.6, 0.3]
    queue = face_dlib._LevelQueue(list(reversed(levels)), list(reversed(cost)))
    taken: list[list[tuple[float, int]]] = [[], []]
    start = threading.Barrier(2)

    def drain(slot: int) -> None:
        start.wait()
        for level in queue:
            taken[slot].append(level)

    workers = [threading.Thread(target=drain, args=(slot,)) for slot in (0, 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(taken[0] + taken[1]) == sorted(levels)  # every level once, whoever took it
    for mine in taken:
        assert mine == sorted(mine, key=lambda level: -cost[levels.index(level)])  # each thread: costly first


class SlowScanner:
    """A real single-level scanner that first waits: the thread that owns it falls behind."""

    def __init__(self, inner: Any, seconds: float) -> None:
        self._inner = inner
        self._seconds = seconds
        self.levels = 0

    def run(self, image: np.ndarray, upsample: int, threshold: float) -> Any:
        import time

        time.sleep(self._seconds)
        self.levels += 1
        return self._inner.run(image, upsample, threshold)


def test_the_candidates_do_not_depend_on_which_thread_scans_which_level() -> None:
    """The first pass over a 2048² render with faces of every size, on one thread, then on two with
    either thread held back (so the queue hands the levels out differently): the same candidate boxes
    and scores, and then the same faces."""
    import random

    import cv2
    import dlib

    from classifiers._common import thread_budget
    from tests.support import faces

    rng = random.Random(7)
    image = faces.canvas("grass", 2048)
    for i, px in enumerate((40, 48, 64, 96, 128, 160)):  # one to a cell of a 3 × 2 grid, heads apart
        faces.paste(image, rng.choice(["astronaut", "hopper"]), px, 682 * (i % 3) + 250, 1024 * (i // 3) + 400,
                    angle=rng.choice([-20, 0, 20]))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    analyzer = face_dlib.DlibFaceAnalyzer({"threads": 2, "embed": False})
    alone = sorted(analyzer._first_pass(grey, 1))
    found = sorted(f.bbox for f in analyzer.detect(image))
    assert len(alone) >= len(found) == 6
    for slow in (0, 1):
        fresh = face_dlib.DlibFaceAnalyzer({"threads": 2, "embed": False})
        held = {cell: SlowScanner(face_dlib.single_level_detector(dlib, cell), 0.05) for cell in (5, 8)}
        fresh._scanners[slow].update(held)
        assert sorted(fresh._first_pass(grey, 2)) == alone
        quick = fresh._scanners[1 - slow]
        assert 0 < sum(s.levels for s in held.values()) < len(face_dlib.pyramid_levels(2048, 2048, 1.6))
        assert quick, "the other thread scanned nothing: the levels were not shared"
        with thread_budget(2):
            assert sorted(f.bbox for f in fresh.detect(image)) == found
