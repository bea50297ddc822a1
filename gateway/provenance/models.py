"""The watermark id table: which decision a watermark id leads to.

Why: the watermark carries only an id; ``provenance_watermarks`` maps (method, id) to the
decision, the perceptual hash of the released image (to confirm short rivaGan ids) and the
C2PA manifest digest. Ids are drawn at random; (method, wm_id) is unique, so a collision is a
failed insert and ``reserve_watermark_id`` simply draws again. ``lookup_watermark`` returns a
list so callers stay correct if a method ever allows shared ids.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import BigInteger, Column, UniqueConstraint
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from gateway.provenance.marks import new_watermark_id

__all__ = ["WatermarkRecord", "lookup_watermark", "pdq_distance", "record_watermark", "reserve_watermark_id"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class WatermarkRecord(SQLModel, table=True):
    __tablename__ = "provenance_watermarks"
    __table_args__ = (UniqueConstraint("method", "wm_id", name="uq_provenance_watermarks_method_id"),)

    id: int | None = Field(default=None, primary_key=True)
    method: str = Field(max_length=32, index=True)
    wm_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    decision_id: str = Field(max_length=64, index=True)
    created_at: dt.datetime = Field(default_factory=_now)
    image_pdq: str | None = Field(default=None, max_length=64)
    manifest_digest: str | None = Field(default=None, max_length=64)


def record_watermark(session: Session, *, method: str, wm_id: int, decision_id: str,
                     image_pdq: str | None = None, manifest_digest: str | None = None,
                     created_at: dt.datetime | None = None) -> WatermarkRecord:
    """Insert the row for a released watermark, or complete the row ``reserve_watermark_id`` made
    for the same decision. Raises ``IntegrityError`` when the id belongs to another decision."""
    existing = session.exec(
        select(WatermarkRecord).where(WatermarkRecord.method == method, WatermarkRecord.wm_id == wm_id)
    ).first()
    if existing is not None:
        if existing.decision_id != decision_id:
            raise IntegrityError("watermark id already recorded for another decision", None,
                                 Exception("duplicate (method, wm_id)"))
        record = existing
        record.image_pdq = image_pdq if image_pdq is not None else record.image_pdq
        record.manifest_digest = manifest_digest if manifest_digest is not None else record.manifest_digest
    else:
        record = WatermarkRecord(method=method, wm_id=wm_id, decision_id=decision_id, image_pdq=image_pdq,
                                 manifest_digest=manifest_digest, created_at=created_at or _now())
    session.add(record)
    session.commit()
    session.refresh(record)
    return record


def reserve_watermark_id(session: Session, *, method: str, decision_id: str, attempts: int = 16,
                         draw: Callable[[str], int] = new_watermark_id) -> WatermarkRecord:
    """Draw a random id and insert its row, drawing again on a collision (before embedding)."""
    for _ in range(attempts):
        record = WatermarkRecord(method=method, wm_id=draw(method), decision_id=decision_id)
        session.add(record)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            continue
        session.refresh(record)
        return record
    raise RuntimeError(f"no free {method} watermark id after {attempts} draws")


def lookup_watermark(session: Session, method: str, wm_id: int) -> list[WatermarkRecord]:
    rows = session.exec(
        select(WatermarkRecord).where(WatermarkRecord.method == method, WatermarkRecord.wm_id == wm_id)
        .order_by(WatermarkRecord.created_at)  # type: ignore[arg-type]
    )
    return list(rows)


def pdq_distance(a_hex: str, b_hex: str) -> int:
    """Hamming distance of two PDQ hashes in hex (the confirmation test for rivaGan ids)."""
    return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()
