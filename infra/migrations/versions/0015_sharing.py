"""Sharing: comments on cases and groups, lessons learned, signed bundles.

Revision ID: 0015
Revises: 0010
Create Date: 2026-11-30 22:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import shared.db

revision: str = "0015"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sharing_comment",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("target_kind", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("target_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("mentions", _json(), nullable=False),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("author_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("accepted_plan_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("accepted_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("accepted_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sharing_comment")),
    )
    with op.batch_alter_table("sharing_comment", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sharing_comment_target", ["target_kind", "target_id", "id"], unique=False
        )
    op.create_table(
        "sharing_lesson",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("what_happened", sa.Text(), nullable=False),
        sa.Column("why_it_matters", sa.Text(), nullable=False),
        sa.Column("mitigation", sa.Text(), nullable=False),
        sa.Column("cost", sa.Text(), nullable=False),
        sa.Column("evidence_group_ids", _json(), nullable=False),
        sa.Column("suites", _json(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("author_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reviewed_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("reviewed_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sharing_lesson")),
    )
    op.create_table(
        "sharing_bundle",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("bundle_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("direction", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("issuer", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("kid", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("profile", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("manifest", _json(), nullable=False),
        sa.Column("manifest_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("teams", _json(), nullable=False),
        sa.Column("max_sensitivity", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sharing_bundle")),
        sa.UniqueConstraint(
            "bundle_id", "direction", name=op.f("uq_sharing_bundle_bundle_id_direction")
        ),
    )


def downgrade() -> None:
    op.drop_table("sharing_bundle")
    op.drop_table("sharing_lesson")
    with op.batch_alter_table("sharing_comment", schema=None) as batch_op:
        batch_op.drop_index("ix_sharing_comment_target")
    op.drop_table("sharing_comment")
