"""Retention: purge marks on cases, retention policies, legal holds.

Revision ID: 0011
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

from shared.db import UTCDateTime

revision = "0011"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("failure_case") as batch:
        batch.add_column(sa.Column("payload_purged_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("purged_at", UTCDateTime(), nullable=True))
    op.create_table(
        "retention_policy",
        sa.Column("data_source", sa.String(length=200), nullable=False),
        sa.Column("sensitivity", sa.String(length=20), nullable=False),
        sa.Column("payload_ttl_days", sa.Integer(), nullable=True),
        sa.Column("case_ttl_days", sa.Integer(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("data_source", "sensitivity", name=op.f("pk_retention_policy")),
    )
    op.create_table(
        "legal_hold",
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("target_id", sa.String(length=36), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=False),
        sa.Column("held_by", sa.String(length=200), nullable=False),
        sa.Column("held_at", UTCDateTime(), nullable=False),
        sa.Column("lifted_by", sa.String(length=200), nullable=True),
        sa.Column("lifted_at", UTCDateTime(), nullable=True),
        sa.Column("lift_reason", sa.String(length=2000), nullable=True),
        sa.PrimaryKeyConstraint("kind", "target_id", name=op.f("pk_legal_hold")),
    )


def downgrade() -> None:
    op.drop_table("legal_hold")
    op.drop_table("retention_policy")
    with op.batch_alter_table("failure_case") as batch:
        batch.drop_column("purged_at")
        batch.drop_column("payload_purged_at")
