"""Postgres: a GIN index for the environment key/value filter (environment @> {...}).

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


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_failure_case_environment", table_name="failure_case")
