"""Several people add migrations at once: two files chained to the same parent make two Alembic
heads, and then `upgrade head` fails for every replica (it happened once on main). One head, always."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from gateway.migrations import alembic_config


def test_the_migrations_have_exactly_one_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"several Alembic heads {heads}: chain the newest migration after the other head"
