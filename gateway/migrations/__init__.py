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


def upgrade_head(url: str) -> None:
    command.upgrade(alembic_config(url), "head")
