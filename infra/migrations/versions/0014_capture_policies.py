"""Capture policies per (model, data source), versioned; each case records the version it met.

Revision ID: 0014
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

from shared.db import JSONType, UTCDateTime

revision = "0014"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "capture_policy",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("data_source", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("definition", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capture_policy")),
        sa.UniqueConstraint(
            "model",
            "data_source",
            "version",
            name=op.f("uq_capture_policy_model_data_source_version"),
        ),
    )
    # Nullable, no default: adding it rewrites no row on either database.
    op.add_column("failure_case", sa.Column("capture_policy_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("failure_case") as batch:
        batch.drop_column("capture_policy_version")
    op.drop_table("capture_policy")
