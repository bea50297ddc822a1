"""Why: the schema evolves with Alembic migrations, run by `consentgate init`/`serve` so a
deployment upgrades in place. The scripts live beside this file; `upgrade_head(url)` applies
them programmatically (no alembic.ini needed at run time)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


MIGRATION_LOCK_ID = 0x636F6E73  # "cons": one PostgreSQL advisory lock for schema upgrades


def upgrade_head(url: str) -> None:
    """Upgrade to head. On PostgreSQL, replicas starting together serialise on an advisory lock
    so two of them never run the same migration at once."""
    if not url.startswith("postgresql"):
        command.upgrade(alembic_config(url), "head")
        return
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_ID})
            try:
                command.upgrade(alembic_config(url), "head")
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_ID})
    finally:
        engine.dispose()
