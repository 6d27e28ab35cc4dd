"""Suite cases found by case id: the suites a case is frozen into (FailureCase.suites).

Revision ID: 0016
Revises: 0009
"""

from alembic import op

revision = "0016"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_suite_case_case_id", "suite_case", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_suite_case_case_id", "suite_case")
