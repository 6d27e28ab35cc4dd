"""Postgres: GIN indexes for the environment and tag filters (JSON containment).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_failure_case_environment",
            "failure_case",
            ["environment"],
            postgresql_using="gin",
            postgresql_ops={"environment": "jsonb_path_ops"},
        )
        op.create_index(
            "ix_failure_case_tags",
            "failure_case",
            ["tags"],
            postgresql_using="gin",
            postgresql_ops={"tags": "jsonb_path_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_failure_case_tags", table_name="failure_case")
        op.drop_index("ix_failure_case_environment", table_name="failure_case")
