"""Alembic environment: every table of the gateway (SQLModel metadata) and the audit log's own."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlmodel import SQLModel

import gateway.apikeys  # noqa: F401 - SQLModel tables register themselves on import
import gateway.provenance.models  # noqa: F401
import gateway.registry.models  # noqa: F401
from gateway.audit import audit_metadata
from gateway.blobs import blob_metadata
from gateway.db import make_engine
from gateway.jobs.storage import job_files_table
from gateway.jobs.store import jobs_table
from gateway.sessions import sessions_table


def _jobs_metadata() -> sa.MetaData:
    jobs = sa.MetaData()
    jobs_table(jobs)
    job_files_table(jobs)
    return jobs


config = context.config
target_metadata = [SQLModel.metadata, audit_metadata(), blob_metadata()[0], _jobs_metadata(),
                   sessions_table.metadata]


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
