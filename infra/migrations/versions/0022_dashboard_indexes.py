"""An index for the dashboard's regressed groups (groups(status: REGRESSED, first: 20), newest
first): without it every group is scanned and sorted; with it the few shown are read in order.
(An index on resolved_at, for the remediation trend, was tried and left out: without ANALYZE,
SQLite then drives that query from the cases, 30 ms -> 1 s at 100,000 cases.)

Revision ID: 0022
Revises: 0014
"""

from alembic import op

revision = "0022"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # groups(status: ..., first: n): WHERE status = ? ORDER BY last_seen DESC, id DESC LIMIT n
    op.create_index(
        "ix_failure_group_status_last_seen", "failure_group", ["status", "last_seen", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_failure_group_status_last_seen", "failure_group")
