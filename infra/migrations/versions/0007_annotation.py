"""Annotation: taxonomies as data, annotations and their history, assignments, reviews.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 19:41:31.428200
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import shared.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "annotation_taxonomy",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column(
            "fields",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_annotation_taxonomy")),
    )
    op.create_table(
        "annotation",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("annotator", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("taxonomy", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("taxonomy_version", sa.Integer(), nullable=False),
        sa.Column(
            "values",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["failure_case.id"], name=op.f("fk_annotation_case_id_failure_case")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation")),
        sa.UniqueConstraint(
            "case_id",
            "annotator",
            "taxonomy",
            name=op.f("uq_annotation_case_id_annotator_taxonomy"),
        ),
    )
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_annotation_annotator"), ["annotator"], unique=False)
        batch_op.create_index(batch_op.f("ix_annotation_case_id"), ["case_id"], unique=False)
        batch_op.create_index("ix_annotation_taxonomy_status", ["taxonomy", "status"], unique=False)

    op.create_table(
        "annotation_assignment",
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("annotator", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("overlap", sa.Integer(), nullable=False),
        sa.Column("assigned_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("assigned_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["failure_case.id"],
            name=op.f("fk_annotation_assignment_case_id_failure_case"),
        ),
        sa.PrimaryKeyConstraint("case_id", "annotator", name=op.f("pk_annotation_assignment")),
    )
    with op.batch_alter_table("annotation_assignment", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_annotation_assignment_annotator"), ["annotator"], unique=False
        )

    op.create_table(
        "annotation_review",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("taxonomy", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("taxonomy_version", sa.Integer(), nullable=True),
        sa.Column("reviewer", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column(
            "values",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column(
            "annotation_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("case_revision", sa.Integer(), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["failure_case.id"], name=op.f("fk_annotation_review_case_id_failure_case")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_review")),
    )
    with op.batch_alter_table("annotation_review", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_annotation_review_case_id"), ["case_id"], unique=False)

    op.create_table(
        "annotation_change",
        sa.Column("annotation_id", sa.String(length=36), nullable=False),
        sa.Column("revision", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column(
            "values",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["annotation_id"],
            ["annotation.id"],
            name=op.f("fk_annotation_change_annotation_id_annotation"),
        ),
        sa.PrimaryKeyConstraint("annotation_id", "revision", name=op.f("pk_annotation_change")),
    )


def downgrade() -> None:
    op.drop_table("annotation_change")
    with op.batch_alter_table("annotation_review", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annotation_review_case_id"))

    op.drop_table("annotation_review")
    with op.batch_alter_table("annotation_assignment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annotation_assignment_annotator"))

    op.drop_table("annotation_assignment")
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.drop_index("ix_annotation_taxonomy_status")
        batch_op.drop_index(batch_op.f("ix_annotation_case_id"))
        batch_op.drop_index(batch_op.f("ix_annotation_annotator"))

    op.drop_table("annotation")
    op.drop_table("annotation_taxonomy")
