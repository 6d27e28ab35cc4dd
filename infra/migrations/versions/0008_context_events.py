"""Context events: deploys, feature changes, drift alerts and environment shifts, scoped.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from shared.db import JSONType, UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "context_event",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("model_version", sa.String(length=100), nullable=True),
        sa.Column("data_source", sa.String(length=200), nullable=True),
        sa.Column("environment", JSONType, nullable=True),
        sa.Column("link", sa.String(length=2000), nullable=True),
        sa.Column("title", sa.String(length=500), nullable=True),
        sa.Column("details", JSONType, nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_context_event")),
        sa.UniqueConstraint("external_id", name=op.f("uq_context_event_external_id")),
    )
    op.create_index("ix_context_event_occurred_at", "context_event", ["occurred_at"])
    op.create_index("ix_context_event_model_at", "context_event", ["model", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_context_event_model_at", "context_event")
    op.drop_index("ix_context_event_occurred_at", "context_event")
    op.drop_table("context_event")
