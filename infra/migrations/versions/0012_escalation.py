"""Escalation: rules, their matches and firings, webhook deliveries and their attempts (the
delivery log), release blocks.

Revision ID: 0012
Revises: 0016
Create Date: 2026-11-30 22:32:35.069025
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import shared.db

revision: str = "0012"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "escalation_rule",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("window_minutes", sa.Integer(), nullable=True),
        sa.Column("days", sa.Integer(), nullable=True),
        sa.Column("webhook_url", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("ticket_url", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("block_release", sa.Boolean(), nullable=False),
        sa.Column("secret", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("team", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("clearance", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_rule")),
        sa.UniqueConstraint("name", name=op.f("uq_escalation_rule_name")),
    )
    op.create_table(
        "escalation_firing",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("rule_id", sa.String(length=36), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("fired_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "case_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("group_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["escalation_rule.id"],
            name=op.f("fk_escalation_firing_rule_id_escalation_rule"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_firing")),
        sa.UniqueConstraint("rule_id", "key", name=op.f("uq_escalation_firing_rule_id_key")),
    )
    op.create_table(
        "escalation_match",
        sa.Column("rule_id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("occurred_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("firing_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["escalation_rule.id"],
            name=op.f("fk_escalation_match_rule_id_escalation_rule"),
        ),
        sa.PrimaryKeyConstraint("rule_id", "case_id", name=op.f("pk_escalation_match")),
    )
    with op.batch_alter_table("escalation_match", schema=None) as batch_op:
        batch_op.create_index(
            "ix_escalation_match_window", ["rule_id", "firing_id", "occurred_at"], unique=False
        )

    op.create_table(
        "escalation_delivery",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("rule_id", sa.String(length=36), nullable=False),
        sa.Column("firing_id", sa.String(length=36), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("url", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("ticket_url", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.ForeignKeyConstraint(
            ["firing_id"],
            ["escalation_firing.id"],
            name=op.f("fk_escalation_delivery_firing_id_escalation_firing"),
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["escalation_rule.id"],
            name=op.f("fk_escalation_delivery_rule_id_escalation_rule"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_delivery")),
    )
    with op.batch_alter_table("escalation_delivery", schema=None) as batch_op:
        batch_op.create_index(
            "ix_escalation_delivery_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            "ix_escalation_delivery_rule", ["rule_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "release_block",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("rule_id", sa.String(length=36), nullable=False),
        sa.Column("firing_id", sa.String(length=36), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column(
            "case_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("lift_reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.ForeignKeyConstraint(
            ["firing_id"],
            ["escalation_firing.id"],
            name=op.f("fk_release_block_firing_id_escalation_firing"),
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["escalation_rule.id"],
            name=op.f("fk_release_block_rule_id_escalation_rule"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_block")),
    )
    with op.batch_alter_table("release_block", schema=None) as batch_op:
        batch_op.create_index(
            "ix_release_block_version", ["model", "version", "lifted_at"], unique=False
        )

    op.create_table(
        "escalation_attempt",
        sa.Column("delivery_id", sa.String(length=36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["escalation_delivery.id"],
            name=op.f("fk_escalation_attempt_delivery_id_escalation_delivery"),
        ),
        sa.PrimaryKeyConstraint("delivery_id", "attempt", name=op.f("pk_escalation_attempt")),
    )


def downgrade() -> None:
    op.drop_table("escalation_attempt")
    with op.batch_alter_table("release_block", schema=None) as batch_op:
        batch_op.drop_index("ix_release_block_version")

    op.drop_table("release_block")
    with op.batch_alter_table("escalation_delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_escalation_delivery_rule")
        batch_op.drop_index("ix_escalation_delivery_due")

    op.drop_table("escalation_delivery")
    with op.batch_alter_table("escalation_match", schema=None) as batch_op:
        batch_op.drop_index("ix_escalation_match_window")

    op.drop_table("escalation_match")
    op.drop_table("escalation_firing")
    op.drop_table("escalation_rule")
