"""the consent ledger's tables: registry_ledger_state (the one-time snapshot marker),
registry_access_tokens (subject access tokens), registry_erasure_requests (erasures a subject asked
for, queued for a registrar), registry_leases (one replica at a time runs the retention sweeper). The registry also creates them idempotently when it opens, so a
database that has them already keeps them as they are.

Revision ID: 0007_ledger
Revises: 0005e15
Create Date: 2026-12-07 07:45:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_ledger'
down_revision = '0005e15'
branch_labels = None
depends_on = None


def _missing(name: str) -> bool:
    return name not in sa.inspect(op.get_bind()).get_table_names()


def upgrade() -> None:
    if _missing('registry_ledger_state'):
        op.create_table(
            'registry_ledger_state',
            sa.Column('id', sa.Integer(), primary_key=True),
            sa.Column('snapshot_at', sa.DateTime(), nullable=False),
            sa.Column('snapshot_entries', sa.Integer(), nullable=False),
        )
    if _missing('registry_access_tokens'):
        op.create_table(
            'registry_access_tokens',
            sa.Column('id', sa.String(32), primary_key=True),
            sa.Column('subject_id', sa.String(64), sa.ForeignKey('registry_subjects.id'), nullable=False),
            sa.Column('secret_sha256', sa.String(64), nullable=False),
            sa.Column('created_by', sa.String(200), nullable=False),
            sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
            sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        )
        op.create_index('ix_registry_access_tokens_subject_id', 'registry_access_tokens', ['subject_id'])
    if _missing('registry_erasure_requests'):
        op.create_table(
            'registry_erasure_requests',
            sa.Column('id', sa.String(32), primary_key=True),
            sa.Column('subject_id', sa.String(64), sa.ForeignKey('registry_subjects.id'), nullable=False),
            sa.Column('token_id', sa.String(32), nullable=False),
            sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
        )
        op.create_index('ix_registry_erasure_requests_subject_id', 'registry_erasure_requests', ['subject_id'])
    if _missing('registry_leases'):
        op.create_table(
            'registry_leases',
            sa.Column('name', sa.String(64), primary_key=True),
            sa.Column('holder', sa.String(64), nullable=False),
            sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        )


def downgrade() -> None:
    for name in ('registry_leases', 'registry_erasure_requests', 'registry_access_tokens', 'registry_ledger_state'):
        op.drop_table(name)
