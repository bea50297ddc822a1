"""The watermark id table, on SQLite (default) or PostgreSQL (CONSENTGATE_TEST_DATABASE_URL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from gateway.provenance import WatermarkRecord, lookup_watermark, pdq_distance, record_watermark
from gateway.provenance.models import reserve_watermark_id

pytestmark = pytest.mark.db

BIG_ID = (1 << 40) - 3  # needs a 64-bit column


def test_record_and_lookup(session: Session) -> None:
    rec = record_watermark(session, method="dwtDctSvd", wm_id=BIG_ID, decision_id="d1",
                           image_pdq="ff" * 32, manifest_digest="ab" * 32)
    assert rec.id is not None and rec.created_at is not None
    found = lookup_watermark(session, "dwtDctSvd", BIG_ID)
    assert [(r.decision_id, r.wm_id, r.manifest_digest) for r in found] == [("d1", BIG_ID, "ab" * 32)]
    assert lookup_watermark(session, "rivaGan", BIG_ID) == []
    assert lookup_watermark(session, "dwtDctSvd", BIG_ID - 1) == []


def test_same_id_for_another_decision_is_refused(session: Session) -> None:
    record_watermark(session, method="dwtDctSvd", wm_id=7, decision_id="d1")
    with pytest.raises(IntegrityError):
        record_watermark(session, method="dwtDctSvd", wm_id=7, decision_id="d2")
    session.add(WatermarkRecord(method="dwtDctSvd", wm_id=7, decision_id="d3"))
    with pytest.raises(IntegrityError):  # the database enforces it too
        session.commit()
    session.rollback()
    assert [r.decision_id for r in lookup_watermark(session, "dwtDctSvd", 7)] == ["d1"]
    record_watermark(session, method="rivaGan", wm_id=7, decision_id="d4")  # other method: fine


def test_reserve_draws_again_on_collision_then_record_completes(session: Session) -> None:
    record_watermark(session, method="rivaGan", wm_id=11, decision_id="old")

    def draws() -> Iterator[int]:
        yield 11
        yield 12

    sequence = draws()
    reserved = reserve_watermark_id(session, method="rivaGan", decision_id="new",
                                    draw=lambda _m: next(sequence))
    assert reserved.wm_id == 12
    done = record_watermark(session, method="rivaGan", wm_id=12, decision_id="new", image_pdq="00" * 32)
    assert done.id == reserved.id and done.image_pdq == "00" * 32


def test_pdq_distance() -> None:
    assert pdq_distance("00" * 32, "00" * 32) == 0
    assert pdq_distance("0f" + "00" * 31, "00" * 32) == 4
