"""Redaction: policies per data source, and on each case its PII findings (kinds and paths),
the raw values a keep_restricted policy kept, and the payload fields' own sensitivity.

Revision ID: 0010
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

from shared.db import JSONType, UTCDateTime

revision = "0010"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "redaction_policy",
        sa.Column("data_source", sa.String(length=200), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("payload_sensitivity", sa.String(length=20), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("data_source", name=op.f("pk_redaction_policy")),
    )
    # Nullable columns without defaults: Postgres adds them without rewriting the table.
    with op.batch_alter_table("failure_case") as batch:
        batch.add_column(sa.Column("pii_findings", JSONType, nullable=True))
        batch.add_column(sa.Column("pii_restricted", JSONType, nullable=True))
        batch.add_column(sa.Column("payload_sensitivity", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("failure_case") as batch:
        batch.drop_column("payload_sensitivity")
        batch.drop_column("pii_restricted")
        batch.drop_column("pii_findings")
    op.drop_table("redaction_policy")
