"""apikeys.uses: the uses a key may request (comma-separated; NULL = every use, as before) — issue #15.2

Revision ID: 0005e15
Revises: 0005_voice
Create Date: 2026-12-07 07:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005e15'
down_revision = '0005_voice'
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns('apikeys')}
    if 'uses' not in columns:
        with op.batch_alter_table('apikeys', schema=None) as batch_op:
            batch_op.add_column(sa.Column('uses', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('apikeys', schema=None) as batch_op:
        batch_op.drop_column('uses')
