"""Alembic environment: every table of the gateway (SQLModel metadata) and the audit log's own."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from gateway.bootstrap import _import_models
from gateway.db import make_engine

_import_models()
from gateway.audit import audit_metadata  # noqa: E402
from gateway.blobs import blob_metadata  # noqa: E402


def _jobs_metadata() -> list[object]:
    import sqlalchemy as sa

    from gateway.jobs.storage import DbJobFiles
    from gateway.jobs.store import jobs_table

    jobs = sa.MetaData()
    jobs_table(jobs)
    return [jobs, DbJobFiles(None).metadata]  # type: ignore[arg-type]


config = context.config
target_metadata = [SQLModel.metadata, audit_metadata(), blob_metadata()[0], *_jobs_metadata()]


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
