"""Seed the default taxonomy (version 1) and severity rubric (version 1).

Revision ID: 0002
Revises: 0001
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from services.catalog.reference import DEFAULT_RUBRIC, DEFAULT_TAXONOMY

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    now = datetime.now(UTC)
    taxonomy = sa.table(
        "taxonomy_version",
        sa.column("version"),
        sa.column("published_at"),
        sa.column("published_by"),
        sa.column("note"),
    )
    modes = sa.table(
        "failure_mode",
        sa.column("taxonomy_version"),
        sa.column("code"),
        sa.column("parent"),
        sa.column("title"),
        sa.column("description"),
    )
    grades = sa.table(
        "severity_grade",
        sa.column("rubric_version"),
        sa.column("grade"),
        sa.column("rank"),
        sa.column("title"),
        sa.column("criteria"),
    )
    op.bulk_insert(
        taxonomy,
        [{"version": 1, "published_at": now, "published_by": "system", "note": "default taxonomy"}],
    )
    op.bulk_insert(
        modes,
        [
            {
                "taxonomy_version": 1,
                "code": code,
                "parent": code.split(".")[0] if "." in code else None,
                "title": title,
                "description": desc,
            }
            for code, title, desc in DEFAULT_TAXONOMY
        ],
    )
    op.bulk_insert(
        grades,
        [
            {"rubric_version": 1, "grade": g, "rank": r, "title": t, "criteria": c}
            for g, r, t, c in DEFAULT_RUBRIC
        ],
    )


def downgrade() -> None:
    op.execute("DELETE FROM severity_grade WHERE rubric_version = 1")
    op.execute("DELETE FROM failure_mode WHERE taxonomy_version = 1")
    op.execute("DELETE FROM taxonomy_version WHERE version = 1")
