"""Why: the audit readers — `audit entries`, `audit verify` and `registry uses` — are called by scripts in
loops and must start in < 0.5 s (#22.6), yet opening the log as the gateway does (`AuditLog`, SQLAlchemy)
costs ~0.25 CPU-s before the first row. On a SQLite data dir (the default) they read the log through
`gateway.audit.sqlite` — the standard library's `sqlite3`, read-only, the same queries, proofs and
verification (tests/audit/test_sqlite.py compares them with the SQLAlchemy reader) — and on any other
database (PostgreSQL) through `AuditLog` as before.

A SQLite database whose log tables are not there yet (no head row) is opened the old way, which creates
them (`AuditLog.create_tables`), so nothing a script sees changes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from gateway.cli.readdb import ReadError, sqlite_path

if TYPE_CHECKING:
    from gateway.audit.sqlite import SqliteLog
    from gateway.settings import Settings

__all__ = ["log_reader", "sqlite_log"]


def sqlite_log(settings: Settings, *, readonly: bool = True) -> SqliteLog | None:
    """The data dir's log on a read-only (unless not `readonly`) sqlite3 connection (the caller closes `.conn`);
    None when the database is not a SQLite file or its log is not initialised (then open it with `AuditLog`).
    A log of another origin raises AuditConfigError, as `AuditLog.create_tables` does."""
    from gateway.audit.errors import AuditConfigError, AuditNotFound
    from gateway.audit.sqlite import SqliteLog, connect

    try:
        path = sqlite_path(settings.resolved_database_url)
    except ReadError:
        return None
    if path is None:
        return None
    try:
        conn = connect(path, readonly=readonly)
    except (AuditConfigError, sqlite3.Error):
        return None
    log = SqliteLog(conn, origin=settings.audit_origin)
    try:
        head = log.head()
    except (AuditNotFound, sqlite3.Error):
        conn.close()
        return None
    if head.origin != settings.audit_origin:
        conn.close()
        raise AuditConfigError(f"tables hold the log {head.origin!r}, not {settings.audit_origin!r}")
    return log


@contextmanager
def log_reader(settings: Settings) -> Iterator[Any]:
    """The data dir's log for reading (`query`, `receipts`, `entry` …): `SqliteLog` on a SQLite file,
    else `AuditLog` (closed afterwards)."""
    lite = sqlite_log(settings)
    if lite is not None:
        try:
            yield lite
        finally:
            lite.conn.close()
        return
    from gateway.bootstrap import open_audit_log
    from gateway.db import make_engine

    engine = make_engine(settings.resolved_database_url)
    try:
        log = open_audit_log(settings, engine)
        try:
            yield log
        finally:
            log.close()
    finally:
        engine.dispose()
