"""Safeguards tables: suites frozen as versions, evaluation runs, resolution proposals, waivers.

Cases and groups are referred to by id only, without foreign keys: the catalog owns their
tables (and may delete a case under retention), and every read of a referred case goes back
through the catalog's service, which applies visibility.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.db import JSONType, UTCDateTime


def _ts(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSONType, nullable=nullable))


class Suite(SQLModel, table=True):
    """A named regression suite of one model; `query` is the saved search it follows (None
    when it was made from a list of cases)."""

    __tablename__ = "suite"
    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=200, unique=True)
    model_name: str = Field(max_length=200, index=True)
    query: str | None = Field(default=None, sa_column=Column(Text))
    latest_version: int
    created_at: datetime = _ts()
    created_by: str = Field(max_length=200)


class SuiteVersion(SQLModel, table=True):
    """One frozen selection: its cases never change once written."""

    __tablename__ = "suite_version"
    __table_args__ = (UniqueConstraint("suite_id", "version"),)
    id: str = Field(primary_key=True, max_length=36)
    suite_id: str = Field(sa_column=Column(String(36), ForeignKey("suite.id"), nullable=False))
    version: int
    query: str | None = Field(default=None, sa_column=Column(Text))
    case_count: int
    # sha256 over the ordered "case id:content hash" lines: equal digests, equal selections.
    digest: str = Field(max_length=64)
    created_at: datetime = _ts()
    created_by: str = Field(max_length=200)


class SuiteCase(SQLModel, table=True):
    """A case as frozen into a suite version: what a test needs (input, expected) and what
    identifies the exact facts and curation it was taken at (revision, content hash).

    A synthetic scenario is frozen the same way: `case_id` is the scenario's id and
    `parent_case_id` the case it varies (whose visibility, group and grading it takes)."""

    __tablename__ = "suite_case"
    __table_args__ = (Index("ix_suite_case_case_id", "case_id"),)
    suite_version_id: str = Field(
        sa_column=Column(String(36), ForeignKey("suite_version.id"), primary_key=True)
    )
    position: int = Field(primary_key=True)
    case_id: str = Field(max_length=36)
    parent_case_id: str | None = Field(default=None, max_length=36)
    group_id: str = Field(max_length=36)
    revision: int
    content_hash: str = Field(max_length=64)
    failure_mode: str | None = Field(default=None, max_length=120)
    severity: str | None = Field(default=None, max_length=2)
    # JSON text, not a JSON column: exported as stored, key order included (jsonb would sort
    # a reordered-keys scenario back into order).
    input_json: str = Field(sa_column=Column(Text, nullable=False))
    expected: Any = _json()


class SyntheticScenario(SQLModel, table=True):
    """A seeded variant of a case's input. Not a catalog case: never counted, grouped or
    searched as a production failure; it reaches suites only when asked for."""

    __tablename__ = "synthetic_scenario"
    # Derived from (parent, perturbation, seed, variant, tolerance): the same request gives
    # the same ids, so generating twice stores nothing twice.
    id: str = Field(primary_key=True, max_length=36)
    parent_case_id: str = Field(max_length=36, index=True)
    perturbation: str = Field(max_length=40)
    seed: int = Field(sa_column=Column(BigInteger, nullable=False))
    variant: int
    tolerance: float | None = None
    input_json: str = Field(sa_column=Column(Text, nullable=False))  # see SuiteCase.input_json
    expected: Any = _json()
    created_at: datetime = _ts()
    created_by: str = Field(max_length=200)


class EvaluationRun(SQLModel, table=True):
    """A model version evaluated against a suite version; the figures are computed once, when
    the run is recorded (outcomes never change afterwards)."""

    __tablename__ = "evaluation_run"
    __table_args__ = (Index("ix_evaluation_run_model_version", "model_name", "model_version"),)
    id: str = Field(primary_key=True, max_length=36)
    model_name: str = Field(max_length=200)
    model_version: str = Field(max_length=100)
    suite_version_id: str = Field(
        sa_column=Column(String(36), ForeignKey("suite_version.id"), nullable=False, index=True)
    )
    total: int
    passed: int
    failed: int
    errored: int
    not_run: int
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    false_alarm_rate: float | None = None
    positive_label: Any = _json()
    metrics: dict[str, Any] = _json(nullable=False)
    created_at: datetime = _ts()
    created_by: str = Field(max_length=200)


class EvaluationOutcome(SQLModel, table=True):
    __tablename__ = "evaluation_outcome"
    run_id: str = Field(
        sa_column=Column(String(36), ForeignKey("evaluation_run.id"), primary_key=True)
    )
    case_id: str = Field(primary_key=True, max_length=36)
    outcome: str = Field(max_length=10)  # pass | fail | error
    latency_ms: float | None = None
    prediction: Any = _json()
    error: str | None = Field(default=None, max_length=2000)


class ResolutionProposal(SQLModel, table=True):
    """Every case of a group passed in a run: resolve the group in that version? A reviewer
    accepts (the catalog then resolves the group) or the proposal stays open."""

    __tablename__ = "resolution_proposal"
    __table_args__ = (UniqueConstraint("run_id", "group_id"),)
    id: str = Field(primary_key=True, max_length=36)
    run_id: str = Field(
        sa_column=Column(String(36), ForeignKey("evaluation_run.id"), nullable=False)
    )
    group_id: str = Field(max_length=36, index=True)
    model_name: str = Field(max_length=200)
    model_version: str = Field(max_length=100)
    case_count: int
    status: str = Field(default="proposed", max_length=20)  # proposed | accepted
    created_at: datetime = _ts()
    decided_at: datetime | None = _ts(nullable=True)
    decided_by: str | None = Field(default=None, max_length=200)


class GateWaiver(SQLModel, table=True):
    """An open S0/S1 group let through the release gate: why, by whom, until when. Never
    deleted: a revoked or expired waiver stays as the record of what was allowed."""

    __tablename__ = "gate_waiver"
    __table_args__ = (Index("ix_gate_waiver_model_group", "model_name", "group_id"),)
    id: str = Field(primary_key=True, max_length=36)
    model_name: str = Field(max_length=200)
    group_id: str = Field(max_length=36)
    # None: every version of the model.
    model_version: str | None = Field(default=None, max_length=100)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    approved_by: str = Field(max_length=200)
    created_at: datetime = _ts()
    expires_at: datetime = _ts()
    revoked_at: datetime | None = _ts(nullable=True)
    revoked_by: str | None = Field(default=None, max_length=200)
