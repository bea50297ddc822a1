"""Real faces through the real dlib analyzer: enrol Eileen Collins (skimage astronaut), recognise her
re-encoded / resized / pasted copies, do not recognise Grace Hopper; one face per enrolment image.

Cosine similarities measured (dlib ResNet, L2-normalised): JPEG q70 0.997, resized to 300 px 0.994,
rescaled crop pasted into coffee ~0.99; Grace Hopper 0.889. dlib's classic Euclidean 0.6 does *not*
translate into a safe cosine cut on normalised vectors: a policy threshold near 0.93 separates these.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gateway.registry.crypto import FileKek, KeyStore, SubjectCrypto
from gateway.registry.errors import EnrolmentError
from gateway.registry.service import Registry
from gateway.registry.store import create_tables

pytestmark = pytest.mark.db
THRESHOLD = 0.93


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((w, h), Image.Resampling.LANCZOS))


@pytest.fixture(scope="module")
def dlib_analyzer() -> Any:
    from classifiers.registry import builtin_registry

    return builtin_registry().create("face", "dlib", {})


@pytest.fixture(scope="module")
def enrolled(module_dbs: Any, dlib_analyzer: Any, astronaut: np.ndarray) -> Iterator[tuple[Registry, str]]:
    dbs = module_dbs
    tmp: Path = dbs.tmp
    store = KeyStore(dbs.engine("keys"))
    store.create_tables()
    main = dbs.engine("main")
    create_tables(main)
    reg = Registry(main, SubjectCrypto(FileKek.create(tmp / "kek"), store), {"dlib": dlib_analyzer})
    subject = reg.create_subject("Eileen Collins", ["Commander Collins"], False, "registrar")
    result = reg.enroll(subject.id, [astronaut], "notice-2026-01", "registrar")
    assert result.templates == {"dlib": 1}
    yield reg, subject.id
    reg.close()


def _best(reg: Registry, analyzer: Any, image: np.ndarray) -> list[tuple[str, float]]:
    faces = analyzer.analyze(image)
    assert len(faces) == 1
    matches = reg.match_faces("dlib", np.stack([faces[0].embedding]), 0.0)[0]
    return [(m.subject_id, m.similarity) for m in matches]


def test_copies_of_the_enrolled_face_match(
    enrolled: tuple[Registry, str], dlib_analyzer: Any, astronaut: np.ndarray, coffee: np.ndarray
) -> None:
    reg, subject_id = enrolled
    pasted = coffee.copy()
    face = _resize(astronaut[20:300, 100:360], 208, 224)  # head and shoulders, rescaled ×0.8
    pasted[60:284, 150:358] = face
    variants = {
        "jpeg_q70": _jpeg(astronaut, 70),
        "resized_300": _resize(astronaut, 300, 300),
        "pasted_into_coffee": pasted,
    }
    for name, image in variants.items():
        best = _best(reg, dlib_analyzer, image)
        print(f"{name}: cosine {best[0][1]:.4f}")
        assert best[0][0] == subject_id and best[0][1] >= THRESHOLD, name


def test_another_person_does_not_match(
    enrolled: tuple[Registry, str], dlib_analyzer: Any, grace_hopper: np.ndarray
) -> None:
    reg, _ = enrolled
    best = _best(reg, dlib_analyzer, grace_hopper)
    print(f"grace_hopper: cosine {best[0][1]:.4f}")
    assert best[0][1] < THRESHOLD
    faces = dlib_analyzer.analyze(grace_hopper)
    assert reg.match_faces("dlib", np.stack([faces[0].embedding]), THRESHOLD) == [[]]


def test_no_face_is_refused(enrolled: tuple[Registry, str], coffee: np.ndarray) -> None:
    reg, subject_id = enrolled
    with pytest.raises(EnrolmentError) as err:
        reg.enroll(subject_id, [coffee], "notice-2026-01", "registrar")
    assert err.value.code == "no_face" and err.value.image_index == 0
    assert "no face" in str(err.value)


def test_two_faces_are_refused(
    enrolled: tuple[Registry, str], astronaut: np.ndarray, grace_hopper: np.ndarray
) -> None:
    reg, subject_id = enrolled
    hopper = _resize(grace_hopper, 512 * grace_hopper.shape[1] // grace_hopper.shape[0], 512)
    side_by_side = np.concatenate([astronaut, hopper], axis=1)
    with pytest.raises(EnrolmentError) as err:
        reg.enroll(subject_id, [astronaut, side_by_side], "notice-2026-01", "registrar")
    assert err.value.code == "multiple_faces" and err.value.image_index == 1
    assert "2 faces" in str(err.value)
    assert reg.get_subject(subject_id).template_count == 1  # nothing of the refused enrolment was kept
