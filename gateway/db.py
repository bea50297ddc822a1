"""Why: one place that knows how to open the database the deployment chose — SQLite (WAL, busy
timeout, foreign keys) by default, PostgreSQL when CONSENTGATE_DATABASE_URL says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# sqlalchemy's create_engine is the one sqlmodel re-exports; taken from here, opening a database does not
# import the ORM (commands that need no model start faster: #22.6)
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=20, pool_pre_ping=True)


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
