"""jobs, job_file_chunks, proxy_blobs: created by migration like every other table (they used to be
created lazily on first use; a deployment that already has them keeps them as they are)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 04:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def _missing(name: str) -> bool:
    return name not in sa.inspect(op.get_bind()).get_table_names()


def upgrade() -> None:
    if _missing('jobs'):
        op.create_table(
            'jobs',
            sa.Column('id', sa.String(32), primary_key=True),
            sa.Column('tenant', sa.Text(), nullable=False),
            sa.Column('key_id', sa.Text(), nullable=False),
            sa.Column('role', sa.Text(), nullable=False),
            sa.Column('action', sa.String(16), nullable=False),
            sa.Column('state', sa.String(16), nullable=False),
            sa.Column('stage', sa.Text(), nullable=False),
            sa.Column('progress', sa.Float(), nullable=False),
            sa.Column('request', sa.Text(), nullable=False),
            sa.Column('input_key', sa.String(48)),
            sa.Column('input_type', sa.Text()),
            sa.Column('input_bytes', sa.BigInteger()),
            sa.Column('result_key', sa.String(48)),
            sa.Column('planned_decision_id', sa.String(32)),
            sa.Column('planned_at', sa.Float()),
            sa.Column('decision', sa.String(16)),
            sa.Column('decision_id', sa.String(32)),
            sa.Column('audit_index', sa.BigInteger()),
            sa.Column('record', sa.Text()),
            sa.Column('error_code', sa.Text()),
            sa.Column('error_message', sa.Text()),
            sa.Column('webhook_url', sa.Text()),
            sa.Column('webhook_status', sa.Text()),
            sa.Column('attempts', sa.Integer(), nullable=False),
            sa.Column('lease_owner', sa.Text()),
            sa.Column('lease_expires_at', sa.Float()),
            sa.Column('created_at', sa.Float(), nullable=False),
            sa.Column('updated_at', sa.Float(), nullable=False),
            sa.Column('started_at', sa.Float()),
            sa.Column('finished_at', sa.Float()),
            sa.Column('expires_at', sa.Float(), nullable=False),
        )
        op.create_index('ix_jobs_tenant', 'jobs', ['tenant'])
        op.create_index('ix_jobs_state', 'jobs', ['state'])
        op.create_index('ix_jobs_expires_at', 'jobs', ['expires_at'])
    if _missing('job_file_chunks'):
        op.create_table(
            'job_file_chunks',
            sa.Column('key', sa.String(48), primary_key=True),
            sa.Column('seq', sa.Integer(), primary_key=True, autoincrement=False),
            sa.Column('data', sa.LargeBinary(), nullable=False),
        )
    if _missing('proxy_blobs'):
        op.create_table(
            'proxy_blobs',
            sa.Column('id', sa.String(32), primary_key=True),
            sa.Column('tenant', sa.Text(), nullable=False),
            sa.Column('mime', sa.Text(), nullable=False),
            sa.Column('created_at', sa.Float(), nullable=False),
            sa.Column('expires_at', sa.Float(), nullable=False),
            sa.Column('data', sa.LargeBinary(), nullable=False),
        )
        op.create_index('ix_proxy_blobs_expires_at', 'proxy_blobs', ['expires_at'])


def downgrade() -> None:
    op.drop_table('proxy_blobs')
    op.drop_table('job_file_chunks')
    op.drop_table('jobs')
