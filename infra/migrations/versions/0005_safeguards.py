"""Safeguards: suites frozen as versions, synthetic scenarios, evaluation runs, resolution
proposals, gate waivers; and the catalog index the release gate reads (failure_case by model
and severity).

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-30 19:43:01.934811
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import shared.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gate_waiver",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("group_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("model_version", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("approved_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_waiver")),
    )
    with op.batch_alter_table("gate_waiver", schema=None) as batch_op:
        batch_op.create_index(
            "ix_gate_waiver_model_group", ["model_name", "group_id"], unique=False
        )

    op.create_table(
        "suite",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("query", sa.Text(), nullable=True),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suite")),
        sa.UniqueConstraint("name", name=op.f("uq_suite_name")),
    )
    with op.batch_alter_table("suite", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_suite_model_name"), ["model_name"], unique=False)

    op.create_table(
        "synthetic_scenario",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("parent_case_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("perturbation", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("variant", sa.Integer(), nullable=False),
        sa.Column("tolerance", sa.Float(), nullable=True),
        sa.Column("input_json", sa.Text(), nullable=False),
        sa.Column(
            "expected",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_synthetic_scenario")),
    )
    with op.batch_alter_table("synthetic_scenario", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_synthetic_scenario_parent_case_id"), ["parent_case_id"], unique=False
        )

    op.create_table(
        "suite_version",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("suite_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("query", sa.Text(), nullable=True),
        sa.Column("case_count", sa.Integer(), nullable=False),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["suite_id"], ["suite.id"], name=op.f("fk_suite_version_suite_id_suite")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suite_version")),
        sa.UniqueConstraint("suite_id", "version", name=op.f("uq_suite_version_suite_id_version")),
    )
    op.create_table(
        "evaluation_run",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("model_version", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("suite_version_id", sa.String(length=36), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("errored", sa.Integer(), nullable=False),
        sa.Column("not_run", sa.Integer(), nullable=False),
        sa.Column("latency_p50_ms", sa.Float(), nullable=True),
        sa.Column("latency_p95_ms", sa.Float(), nullable=True),
        sa.Column("false_alarm_rate", sa.Float(), nullable=True),
        sa.Column(
            "positive_label",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "metrics",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["suite_version_id"],
            ["suite_version.id"],
            name=op.f("fk_evaluation_run_suite_version_id_suite_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_run")),
    )
    with op.batch_alter_table("evaluation_run", schema=None) as batch_op:
        batch_op.create_index(
            "ix_evaluation_run_model_version", ["model_name", "model_version"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_evaluation_run_suite_version_id"), ["suite_version_id"], unique=False
        )

    op.create_table(
        "suite_case",
        sa.Column("suite_version_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("parent_case_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("group_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("content_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("failure_mode", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("severity", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=True),
        sa.Column("input_json", sa.Text(), nullable=False),
        sa.Column(
            "expected",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["suite_version_id"],
            ["suite_version.id"],
            name=op.f("fk_suite_case_suite_version_id_suite_version"),
        ),
        sa.PrimaryKeyConstraint("suite_version_id", "position", name=op.f("pk_suite_case")),
    )
    op.create_table(
        "evaluation_outcome",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column(
            "prediction",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["evaluation_run.id"],
            name=op.f("fk_evaluation_outcome_run_id_evaluation_run"),
        ),
        sa.PrimaryKeyConstraint("run_id", "case_id", name=op.f("pk_evaluation_outcome")),
    )
    op.create_table(
        "resolution_proposal",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("group_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("model_version", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("case_count", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("created_at", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["evaluation_run.id"],
            name=op.f("fk_resolution_proposal_run_id_evaluation_run"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resolution_proposal")),
        sa.UniqueConstraint(
            "run_id", "group_id", name=op.f("uq_resolution_proposal_run_id_group_id")
        ),
    )
    with op.batch_alter_table("resolution_proposal", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_resolution_proposal_group_id"), ["group_id"], unique=False
        )

    # The catalog's index for the release gate (services/catalog/models.py says why).
    with op.batch_alter_table("failure_case", schema=None) as batch_op:
        batch_op.create_index(
            "ix_failure_case_model_severity", ["model_id", "severity", "group_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("failure_case", schema=None) as batch_op:
        batch_op.drop_index("ix_failure_case_model_severity")

    with op.batch_alter_table("resolution_proposal", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resolution_proposal_group_id"))

    op.drop_table("resolution_proposal")
    op.drop_table("evaluation_outcome")
    op.drop_table("suite_case")
    with op.batch_alter_table("evaluation_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evaluation_run_suite_version_id"))
        batch_op.drop_index("ix_evaluation_run_model_version")

    op.drop_table("evaluation_run")
    op.drop_table("suite_version")
    with op.batch_alter_table("synthetic_scenario", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_synthetic_scenario_parent_case_id"))

    op.drop_table("synthetic_scenario")
    with op.batch_alter_table("suite", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_suite_model_name"))

    op.drop_table("suite")
    with op.batch_alter_table("gate_waiver", schema=None) as batch_op:
        batch_op.drop_index("ix_gate_waiver_model_group")

    op.drop_table("gate_waiver")
