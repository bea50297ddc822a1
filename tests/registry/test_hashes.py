"""Hash lists (StopNCII-style) with the real PDQ hasher: a flipped copy is caught through the dihedral
hashes, an unrelated image is not; submitted images are hashed and discarded."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.registry.hashes import HashIndex

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def pdq() -> Any:
    from classifiers.registry import builtin_registry

    return builtin_registry().create("hash", "pdq", {})


def test_flipped_copy_is_caught(
    make_registry: Any, main_engine: Engine, pdq: Any, chelsea: np.ndarray, coffee: np.ndarray
) -> None:
    reg = make_registry(hasher=pdq)
    sid = reg.create_subject("A", [], False, "registrar").id
    added = reg.add_hashes(sid, images=[chelsea], created_by="registrar")
    assert added.added == 1 and added.hashes == [pdq.hashes(chelsea)[0]]
    with main_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT hash_hex, source FROM registry_hashes")).all()
    assert [tuple(r) for r in rows] == [(added.hashes[0], "image")]  # the hash only, never the image

    flipped = pdq.hashes(np.ascontiguousarray(chelsea[:, ::-1]))
    identity_only = reg.hash_hits(flipped[:1], 31)
    print("flipped, identity hash only:", identity_only)
    hits = reg.hash_hits(flipped, 31)
    assert hits and hits[0][0] == sid and hits[0][1] <= 31
    print("flipped, dihedral hashes: distance", hits[0][1])
    assert reg.hash_hits(pdq.hashes(coffee), 31) == []


def test_hash_index_keeps_each_subjects_nearest() -> None:
    index = HashIndex([("a", "00" * 32), ("a", "01" + "00" * 31), ("b", "ff" * 32)])
    assert index.search(["01" + "00" * 31], 31) == [("a", 0)]
    assert index.search(["ff" * 32, "00" * 32], 0) == [("a", 0), ("b", 0)]
    assert index.search(["0f" * 32], 126) == []
    assert HashIndex([]).search(["00" * 32], 31) == []
