"""Why: the consent-ledger tests (tests/registry: the ledger itself, retention) build the same two
things — a face the fake analyzer knows by identity, and an audit log on the registry's database
that every mutation appends to and that must verify, fully covered by a signed checkpoint, when the
test is done (as Sunlight's CheckLog checks a log from outside). Defined once here;
tests/registry/conftest.py makes the `log` fixture from `checked_log`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from sqlalchemy.engine import Engine

from classifiers.fake import draw_fake_face
from gateway.audit import AuditLog, CheckpointSigner
from gateway.audit.testing import assert_log_consistent

__all__ = ["checked_log", "fake_face"]


def fake_face(identity: int) -> np.ndarray:
    """A 240×230 grey image with one fake face of IDENTITY (80 px, at 20,60) — what
    `classifiers.fake.FakeFaceAnalyzer` detects and embeds by identity."""
    img = np.full((240, 230, 3), 90, np.uint8)
    draw_fake_face(img, identity, 20, 60, 80)
    return img


@contextmanager
def checked_log(engine: Engine, origin: str) -> Iterator[AuditLog]:
    """An audit log on ENGINE (tables created; checkpoints and the query index at once); afterwards a
    checkpoint is published and the whole log must verify and be covered by it."""
    made = AuditLog(engine, CheckpointSigner.generate(origin), origin=origin, checkpoint_interval_ms=0,
                    index_interval_ms=0)
    made.create_tables()
    yield made
    made.publish_checkpoint()
    made.close()
    assert_log_consistent(made, require_covered=True)
