"""A caller's thread budget (classifiers/_common.thread_budget, set per check by the pipeline) changes
how many threads a model call uses, never what it returns: the NSFW models' scores and the dlib
analyzer's faces (boxes, scores, embeddings) are the same with one thread, two, or no budget set."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from classifiers._common import budget_set, call_threads, thread_budget
from classifiers.face_dlib import DlibFaceAnalyzer
from tests.classifiers.conftest import ModelCache
from tests.support import faces


def test_a_budget_caps_the_configured_threads_within_its_block() -> None:
    assert (budget_set(), call_threads(2)) == (None, 2)
    with thread_budget(1):
        assert (budget_set(), call_threads(2), call_threads(1)) == (1, 1, 1)
        with thread_budget(4):
            assert call_threads(2) == 2  # a budget never raises the configured count
        seen: list[int | None] = []
        worker = threading.Thread(target=lambda: seen.append(budget_set()))
        worker.start()
        worker.join()
        assert seen == [None]  # a plain thread does not inherit it: the pipeline passes it explicitly
    assert budget_set() is None
    with pytest.raises(ValueError, match=">= 1"), thread_budget(0):
        pass


@pytest.mark.parametrize("name", ["nudenet", "opennsfw"])
def test_nsfw_scores_do_not_depend_on_the_budget(models: ModelCache, name: str, astronaut: np.ndarray,
                                                 coffee: np.ndarray) -> None:
    model = models.get("nsfw", name)
    images = [astronaut, coffee, astronaut[::2, ::2].copy()]
    free = model.classify(images)
    with thread_budget(1):
        one = model.classify(images)
    assert one == free
    assert 1 in model._session._sessions  # the budget picked a one-thread session


@pytest.fixture(scope="module")
def render() -> np.ndarray:
    rng = random.Random(21)
    image = faces.canvas("coffee", 1400)
    for i, px in enumerate((40, 56, 80, 120)):
        faces.paste(image, rng.choice(["astronaut", "hopper"]), px, 150 + 300 * i, 200 + 250 * i,
                    angle=rng.choice([-20, 0, 20]))
    return image


def test_faces_do_not_depend_on_the_budget(render: np.ndarray) -> None:
    analyzer = DlibFaceAnalyzer({"threads": 2})  # the gateway passes model_threads (2)

    def faces_now() -> list[tuple[tuple[int, int, int, int], float, tuple[float, ...]]]:
        return [(f.bbox, f.det_score, tuple(np.asarray(f.embedding).tolist())) for f in analyzer.analyze(render)]

    with thread_budget(1):
        one = faces_now()
    assert not analyzer._scanners[1]  # one thread: the second worker's scanners were never made
    with thread_budget(2):
        two = faces_now()
    assert analyzer._scanners[1]  # two threads: the levels were shared
    free = faces_now()
    assert len(one) >= 4 and two == one and free == one
