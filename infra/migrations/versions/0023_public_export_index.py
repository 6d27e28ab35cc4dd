"""A partial index of public cases by (occurred_at, id), for the public profile's bundle
export (services/sharing/pages.py `live_pages`): its keyset pages read the public cases in
order instead of walking every case's entry of ix_failure_case_occurred_id and reading each
row to find the public ones.

Revision ID: 0023
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_failure_case_public_occurred",
        "failure_case",
        ["occurred_at", "id"],
        postgresql_where=sa.text("sensitivity = 'public'"),
        sqlite_where=sa.text("sensitivity = 'public'"),
    )


def downgrade() -> None:
    op.drop_index("ix_failure_case_public_occurred", "failure_case")
