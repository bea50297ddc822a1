"""Why: several test folders need the same real, benign test images; load each once per session.

All come from installed packages (never from the repo): astronaut and Grace Hopper are real
faces; coffee and chelsea (a cat) have none. Arrays are RGB uint8 (H, W, 3), read-only so a
test cannot corrupt another's input.
"""

from __future__ import annotations

import os

import numpy as np
import pytest


def _frozen(image: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(image, dtype=np.uint8)
    arr.setflags(write=False)
    return arr


def _skimage_image(name: str) -> np.ndarray:
    import skimage.data

    loader = getattr(skimage.data, name)
    return np.asarray(loader())


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return _frozen(_skimage_image("astronaut"))


@pytest.fixture(scope="session")
def grace_hopper() -> np.ndarray:
    import matplotlib
    from PIL import Image

    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    with Image.open(path) as img:
        return _frozen(np.asarray(img.convert("RGB")))


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    return _frozen(_skimage_image("coffee"))


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    return _frozen(_skimage_image("chelsea"))
