"""audit: tenant, decision-id and subject lookups move from B-tree indexes written by every
append to postings written in batches by the indexer (gateway/audit/schema.py)

Existing entries get their postings here, so the indexer starts at the current tree size.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 18:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'audit_lookup',
        sa.Column('key', sa.Text(), nullable=False),
        sa.Column('idx', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('key', 'idx'),
        sqlite_with_rowid=False,
    )
    op.create_table(
        'audit_lookup_state',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('indexed_size', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.execute("INSERT INTO audit_lookup (key, idx) "
               "SELECT 't:' || tenant, idx FROM audit_entries WHERE tenant IS NOT NULL")
    op.execute("INSERT INTO audit_lookup (key, idx) "
               "SELECT 'd:' || decision_id, idx FROM audit_entries WHERE decision_id IS NOT NULL")
    op.execute("INSERT INTO audit_lookup (key, idx) SELECT 's:' || subject_id, idx FROM audit_subjects")
    op.execute("INSERT INTO audit_lookup_state (id, indexed_size) "
               "VALUES (1, COALESCE((SELECT tree_size FROM audit_head WHERE id = 1), 0))")
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_tenant')
        batch_op.drop_index('ix_audit_entries_decision_id')
    with op.batch_alter_table('audit_subjects', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_subjects_subject')


def downgrade() -> None:
    with op.batch_alter_table('audit_subjects', schema=None) as batch_op:
        batch_op.create_index('ix_audit_subjects_subject', ['subject_id', 'idx'], unique=False)
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entries_decision_id', ['decision_id'], unique=False)
        batch_op.create_index('ix_audit_entries_tenant', ['tenant', 'idx'], unique=False)
    op.drop_table('audit_lookup_state')
    op.drop_table('audit_lookup')
