"""voice enrolment (issue #18): registry_voice_enrolments, registry_voice_templates, registry_voice_clips

Revision ID: 0005_voice
Revises: 0004
Create Date: 2026-12-07 07:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0005_voice'
down_revision = '0004'
branch_labels = None
depends_on = None


def _s(n: int) -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sqlmodel.sql.sqltypes.AutoString(length=n)


def upgrade() -> None:
    op.create_table(
        'registry_voice_enrolments',
        sa.Column('id', _s(64), nullable=False),
        sa.Column('subject_id', _s(64), nullable=False),
        sa.Column('notice_version', _s(200), nullable=False),
        sa.Column('enrolled_by', _s(200), nullable=False),
        sa.Column('clip_count', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['subject_id'], ['registry_subjects.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_registry_voice_enrolments_subject_id', 'registry_voice_enrolments', ['subject_id'])
    op.create_table(
        'registry_voice_templates',
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('subject_id', _s(64), nullable=False),
        sa.Column('enrolment_id', _s(64), nullable=False),
        sa.Column('model', _s(100), nullable=False),
        sa.Column('model_version', _s(100), nullable=False),
        sa.Column('dim', sa.Integer(), nullable=False),
        sa.Column('embedding_ct', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['enrolment_id'], ['registry_voice_enrolments.id']),
        sa.ForeignKeyConstraint(['subject_id'], ['registry_subjects.id']),
        sa.PrimaryKeyConstraint('seq'),
        sqlite_autoincrement=True,
    )
    op.create_index('ix_registry_voice_templates_model', 'registry_voice_templates', ['model'])
    op.create_index('ix_registry_voice_templates_subject_id', 'registry_voice_templates', ['subject_id'])
    op.create_table(
        'registry_voice_clips',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('subject_id', _s(64), nullable=False),
        sa.Column('enrolment_id', _s(64), nullable=False),
        sa.Column('clip_ct', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['enrolment_id'], ['registry_voice_enrolments.id']),
        sa.ForeignKeyConstraint(['subject_id'], ['registry_subjects.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_registry_voice_clips_subject_id', 'registry_voice_clips', ['subject_id'])


def downgrade() -> None:
    op.drop_table('registry_voice_clips')
    op.drop_table('registry_voice_templates')
    op.drop_table('registry_voice_enrolments')
