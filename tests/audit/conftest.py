"""Why: audit tests run on a SQLite file by default and on PostgreSQL when
CONSENTGATE_TEST_DATABASE_URL is set; each test gets its own table prefix, dropped afterwards, so
runs sharing one PostgreSQL database do not collide."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from gateway.audit import AuditLog, CheckpointSigner, audit_metadata

from .helpers import ORIGIN, LogFactory


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return os.environ.get("CONSENTGATE_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.fixture
def prefix() -> str:
    return f"audit_t{uuid.uuid4().hex[:10]}_"


@pytest.fixture
def engine(db_url: str, prefix: str) -> Iterator[Engine]:
    eng = create_engine(db_url)
    yield eng
    if eng.dialect.name != "sqlite":
        audit_metadata(prefix).drop_all(eng)
    eng.dispose()


@pytest.fixture
def signer() -> CheckpointSigner:
    return CheckpointSigner.generate(ORIGIN)



@pytest.fixture
def make_log(engine: Engine, signer: CheckpointSigner, prefix: str) -> Iterator[LogFactory]:
    logs: list[AuditLog] = []

    def make(**kwargs: object) -> AuditLog:
        options: dict[str, object] = {"origin": ORIGIN, "table_prefix": prefix,
                                      "checkpoint_interval_ms": 0}
        options.update(kwargs)
        log = AuditLog(engine, signer, **options)  # type: ignore[arg-type]
        log.create_tables()
        logs.append(log)
        return log

    yield make
    for log in logs:
        log.close()
