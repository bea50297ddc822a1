"""Why: switching the registry's face model must not leave enrolled people unmatchable. Switching
re-embeds every subject from the kept, encrypted enrolment images; `face_model_ready` (called by
policy activation) refuses a face model while an enrolled subject has no template for it; and
switching back needs no re-enrolment because the old model's templates are kept.

Walks dlib -> insightface (tiny pack) -> dlib with real enrolment images (the astronaut and Grace
Hopper) and one image the tiny insightface detector cannot accept (a darkened astronaut)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from classifiers import builtin_registry
from gateway.registry.crypto import FileKek, KeyStore, SubjectCrypto
from gateway.registry.service import Registry
from gateway.registry.store import create_tables
from gateway.registry.switch import FaceModelNotReady, face_model_ready, switch_face_model
from tests.models.conftest import needs_insightface

pytestmark = needs_insightface


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    keys = sa.create_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    store = KeyStore(keys)
    store.create_tables()
    main = sa.create_engine(f"sqlite:///{tmp_path / 'main.db'}")
    create_tables(main)
    dlib = builtin_registry().face("dlib")
    reg = Registry(main, SubjectCrypto(FileKek.create(tmp_path / "kek"), store), {"dlib": dlib})
    yield reg
    reg.close()
    main.dispose()
    keys.dispose()


def _match(reg: Registry, model: str, analyzer: Any, image: np.ndarray, threshold: float) -> list[str]:
    (face,) = analyzer.analyze(image)
    (hits,) = reg.match_faces(model, np.asarray([face.embedding], np.float32), threshold)
    return [h.subject_id for h in hits]


def test_dlib_to_insightface_and_back(
    registry: Registry, insightface_dir: Path, astronaut: np.ndarray, grace_hopper: np.ndarray
) -> None:
    reg = registry
    dlib = reg.face_analyzers["dlib"]
    collins = reg.create_subject("Eileen Collins", [], False, "registrar").id
    hopper = reg.create_subject("Grace Hopper", [], False, "registrar").id
    dim = reg.create_subject("Dim Collins", [], False, "registrar").id
    reg.enroll(collins, [astronaut], "notice-1", "registrar")
    reg.enroll(hopper, [grace_hopper], "notice-1", "registrar")
    # dlib still finds her in the dark copy; the tiny SCRFD does not
    dark = (astronaut.astype(np.float32) * 0.35).astype(np.uint8)
    reg.enroll(dim, [dark], "notice-1", "registrar")
    reg.create_subject("Name only", ["alias"], True, "registrar")  # no enrolment: needs no template
    assert face_model_ready(reg, "dlib") == (True, 0)

    insight = builtin_registry().face("insightface", {"model_dir": str(insightface_dir)})
    assert face_model_ready(reg, "insightface") == (False, 3)
    assert face_model_ready(reg, "insightface", insight.info.version) == (False, 3)

    # 1. the switch re-embeds, but one subject's only image fails the new model: refused
    with pytest.raises(FaceModelNotReady) as err:
        switch_face_model(reg, "insightface", insight)
    assert err.value.missing == 1 and err.value.report["skipped_images"] == 1
    assert err.value.report["templates"] == 2
    assert face_model_ready(reg, "insightface") == (False, 1)

    # 2. the operator erases (or re-enrols) that subject; now the switch goes through
    reg.erase(dim, "registrar")
    report = switch_face_model(reg, "insightface", insight)
    assert report["ready"] is True and report["missing"] == 0 and report["templates"] == 2
    assert report["model_version"] == insight.info.version
    assert _match(reg, "insightface", insight, astronaut, 0.99) == [collins]
    assert _match(reg, "insightface", insight, grace_hopper, 0.99) == [hopper]

    # 3. back to dlib: its templates were kept, so it is ready before and after re-embedding
    assert face_model_ready(reg, "dlib") == (True, 0)
    back = switch_face_model(reg, "dlib", dlib)
    assert back["ready"] is True and back["templates"] == 2
    assert _match(reg, "dlib", dlib, astronaut, 0.93) == [collins]
    assert _match(reg, "dlib", dlib, grace_hopper, 0.93) == [hopper]


def test_new_weights_under_the_same_name_are_not_ready(
    registry: Registry, insightface_dir: Path, tmp_path: Path, astronaut: np.ndarray
) -> None:
    from tests.models import tiny

    reg = registry
    subject = reg.create_subject("Eileen Collins", [], False, "registrar").id
    reg.enroll(subject, [astronaut], "notice-1", "registrar")
    old = builtin_registry().face("insightface", {"model_dir": str(insightface_dir)})
    switch_face_model(reg, "insightface", old)
    new = builtin_registry().face(
        "insightface", {"model_dir": str(tiny.insightface_pack(tmp_path / "v2", seed=7))}
    )
    assert new.info.version != old.info.version
    assert face_model_ready(reg, "insightface", new.info.version) == (False, 1)
    reg.face_analyzers["insightface"] = new  # attached, templates still from the old weights
    assert face_model_ready(reg, "insightface") == (False, 1)
    assert switch_face_model(reg, "insightface", new)["ready"] is True
