"""Why: the small database mechanics the registry service and every replica's index share — table
creation, change counters, UTC timestamps, the one mapping of a grant row to the `GrantFact` the
decision reads, and the decrypting template source the face index reads.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from gateway.decision.facts import GrantFact
from gateway.registry.crypto import SubjectCrypto
from gateway.registry.errors import CryptoError, RegistryUnavailable, SubjectKeyNotFound
from gateway.registry.index import TemplateBatch
from gateway.registry.models import (
    REGISTRY_TABLES,
    RegistryFaceTemplate,
    RegistryGrant,
    RegistryState,
    RegistrySubject,
    RegistryTemplateRemoval,
)
from gateway.registry.records import to_utc

log = logging.getLogger(__name__)

COUNTERS = ("faces", "names", "hashes")


def create_tables(engine: Engine) -> None:
    """Create the registry tables in the main database and its single state row (idempotent)."""
    SQLModel.metadata.create_all(engine, tables=list(REGISTRY_TABLES))
    with Session(engine) as s:
        if s.get(RegistryState, 1) is None:
            s.add(RegistryState(id=1))
            try:
                s.commit()
            except sa.exc.IntegrityError:  # another process created it first
                s.rollback()


def drop_tables(engine: Engine) -> None:
    SQLModel.metadata.drop_all(engine, tables=list(REGISTRY_TABLES))


def grant_fact(g: RegistryGrant) -> GrantFact:
    """A grant row as the decision reads it (times as aware UTC). The one place the row is mapped."""
    return GrantFact(
        id=g.id,
        subject_id=g.subject_id,
        grantee_tenant=g.grantee_tenant,
        grantee_end_user=g.grantee_end_user,
        uses=tuple(g.uses),
        valid_from=to_utc(g.valid_from),
        expires_at=to_utc(g.expires_at) if g.expires_at else None,
        revoked_at=to_utc(g.revoked_at) if g.revoked_at else None,
    )


def grant_state(fact: GrantFact | None, now: datetime) -> str:
    """What a grant is now, for a provenance report: erased (no row), revoked, expired or granted."""
    if fact is None:
        return "erased"
    if fact.revoked_at is not None:
        return "revoked"
    if fact.expires_at is not None and fact.expires_at <= now:
        return "expired"
    return "granted"


def template_purpose(model: str, model_version: str) -> str:
    return f"face_template|{model}|{model_version}"


@contextmanager
def unavailable_on_db_error(what: str) -> Iterator[None]:
    try:
        yield
    except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:  # connection, lock, pool: not our bugs
        raise RegistryUnavailable(f"{what}: database error ({type(exc).__name__})") from exc


def bump(session: Session, *counters: str) -> None:
    """Increment change counters inside the caller's transaction. Done first in each mutating transaction:
    the row lock serialises writers, so template seqs become visible in commit order."""
    values = {c: getattr(RegistryState, c) + 1 for c in counters}
    stmt = sa.update(RegistryState).where(col(RegistryState.id) == 1).values(**values)
    n = session.connection().execute(stmt).rowcount
    if not n:
        session.add(RegistryState(id=1, **{c: 1 for c in counters}))
        session.flush()


def read_counters(engine: Engine) -> dict[str, int]:
    with Session(engine) as s:
        row = s.get(RegistryState, 1)
        return {c: (getattr(row, c) if row else 0) for c in COUNTERS}


class DbTemplateSource:
    """Decrypted templates of one (model, model_version) for a `FaceIndex`; version from a callback so the
    registry can rate-limit its polling of the state row. Voice templates use the same source over their
    own table (`table`, `purpose`, and `removal_key`: the `model` their tombstones carry)."""

    def __init__(
        self,
        engine: Engine,
        crypto: SubjectCrypto,
        model: str,
        model_version: str,
        dim: int,
        version: Callable[[], int],
        *,
        table: Any = RegistryFaceTemplate,
        purpose: str | None = None,
        removal_key: str | None = None,
    ) -> None:
        self.table = table
        self.purpose = purpose or template_purpose(model, model_version)
        self.removal_key = removal_key or model
        self.engine = engine
        self.crypto = crypto
        self.model = model
        self.model_version = model_version
        self.dim = dim
        self._version = version

    def version(self) -> int:
        return self._version()

    def added_since(self, after_seq: int) -> TemplateBatch:
        t = self.table
        with Session(self.engine) as s:
            rows = s.exec(
                select(t.seq, t.subject_id, t.embedding_ct)
                .where(t.model == self.model, t.model_version == self.model_version, col(t.seq) > after_seq)
                .order_by(col(t.seq))
            ).all()
        by_subject: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
        for seq, subject_id, ct in rows:
            by_subject[subject_id].append((seq or 0, bytes(ct)))
        purpose = self.purpose
        seqs: list[int] = []
        subjects: list[str] = []
        vectors: list[np.ndarray] = []
        missing: list[str] = []
        decrypted: dict[str, list[bytes]] = {}
        for subject_id, items in by_subject.items():
            try:
                decrypted[subject_id] = self.crypto.decrypt_many(subject_id, [ct for _, ct in items], purpose)
            except SubjectKeyNotFound:
                missing.append(subject_id)
            except CryptoError as exc:
                # A wrong KEK or a tampered key store: fail closed, cache nothing, skip nothing (#15.5).
                raise RegistryUnavailable(f"cannot decrypt the face templates of an enrolled subject "
                                          f"({type(exc).__name__}): wrong key-encryption key or key store?") from exc
        if missing:
            with Session(self.engine) as s:
                enrolled = s.exec(select(RegistrySubject.id).where(col(RegistrySubject.id).in_(missing))).all()
            if enrolled:  # not erased (an erased subject's row is gone): the key store lost its keys
                raise RegistryUnavailable(f"the key store has no data key for {len(enrolled)} enrolled subject(s): "
                                          "wrong or emptied key store (CONSENTGATE_KEYSTORE_URL)?")
        for subject_id, items in by_subject.items():
            plains = decrypted.get(subject_id)
            if plains is None:
                continue  # erased meanwhile: its rows are going away
            for (seq, _), plain in zip(items, plains, strict=True):
                vec = np.frombuffer(plain, dtype=np.float32)
                if vec.shape != (self.dim,):
                    log.warning("skipping template %d: dimension %d != %d", seq, vec.size, self.dim)
                    continue
                seqs.append(seq)
                subjects.append(subject_id)
                vectors.append(vec)
        matrix = np.stack(vectors) if vectors else np.zeros((0, self.dim), np.float32)
        # the newest seq read, skipped rows included, so they are not re-read on every change
        newest = max((r[0] or 0 for r in rows), default=after_seq)
        return TemplateBatch(np.array(seqs, np.int64), subjects, matrix, newest_seq=newest)

    def removed_since(self, after_removal_seq: int) -> tuple[list[int], int]:
        r = RegistryTemplateRemoval
        with Session(self.engine) as s:
            rows = s.exec(
                select(r.seq, r.template_seq)
                .where(col(r.seq) > after_removal_seq, r.model == self.removal_key)
                .order_by(col(r.seq))
            ).all()
        newest = max((seq or 0 for seq, _ in rows), default=after_removal_seq)
        return [int(t) for _, t in rows], newest
