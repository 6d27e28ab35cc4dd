"""Plans tables. Evidence refers to cases and groups by id (the catalog owns them) and to
suites by name (the safeguards own them); every read of them goes through their services."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.db import JSONType, UTCDateTime


def _ts(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSONType, nullable=nullable))


class RetrainingPlan(SQLModel, table=True):
    """draft -> approved -> in_progress -> evaluated -> closed; its outcome is measured by
    evaluation runs of the candidate version against the targets."""

    __tablename__ = "retraining_plan"
    id: str = Field(primary_key=True, max_length=36)
    title: str = Field(max_length=500)
    model_name: str = Field(max_length=200, index=True)
    base_version: str | None = Field(default=None, max_length=100)
    candidate_version: str | None = Field(default=None, max_length=100)
    status: str = Field(default="draft", max_length=20)
    # {"case_ids": [...], "group_ids": [...], "slice_query": "..."}
    evidence: dict[str, Any] = _json(nullable=False)
    feature_config: dict[str, Any] | None = _json()
    # [{"suite", "metric", "op", "value"}]
    targets: list[dict[str, Any]] = _json(nullable=False)
    augmentations: list[str] = _json(nullable=False)
    # {"hyperparameters": {...}, "architecture": "..."}
    changes: dict[str, Any] | None = _json()
    evaluation_suites: list[str] = _json(nullable=False)
    outcome: dict[str, Any] | None = _json()
    revision: int = 1
    created_at: datetime = _ts()
    created_by: str = Field(max_length=200)
    approved_at: datetime | None = _ts(nullable=True)
    approved_by: str | None = Field(default=None, max_length=200)
    started_at: datetime | None = _ts(nullable=True)
    evaluated_at: datetime | None = _ts(nullable=True)
    closed_at: datetime | None = _ts(nullable=True)


class EvaluationPlan(SQLModel, table=True):
    """A living document: each revision is a new version; old versions stay readable."""

    __tablename__ = "evaluation_plan"
    __table_args__ = (UniqueConstraint("name", "version"),)
    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=200)
    version: int
    model_name: str = Field(max_length=200)
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    # [{"suite", "min_pass_rate", "max_false_alarm_rate", "max_latency_p95_ms",
    #   "min_stability"}]
    benchmarks: list[dict[str, Any]] = _json(nullable=False)
    created_at: datetime = _ts()
    created_by: str = Field(max_length=200)
