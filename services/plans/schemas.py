"""Inputs of the plans service (pydantic)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.safeguards.schemas import refuse_unstorable

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
MAX_VERSION = 100
Version = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_VERSION)
]
MAX_EVIDENCE = 10_000
MAX_ITEMS = 100


class PlanStatus(StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    IN_PROGRESS = "in_progress"
    EVALUATED = "evaluated"
    CLOSED = "closed"


class Metric(StrEnum):
    PASS_RATE = "pass_rate"
    FALSE_ALARM_RATE = "false_alarm_rate"
    LATENCY_P95_MS = "latency_p95_ms"
    STABILITY = "stability"  # pass rate over the suite's synthetic scenarios


# Metrics that are fractions of a suite: a target outside 0-1 could never be met (or always is).
RATES = (Metric.PASS_RATE, Metric.FALSE_ALARM_RATE, Metric.STABILITY)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Every field of every input: what cannot be stored is refused at it, as in the safeguards.
    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return refuse_unstorable(value)


class Target(_In):
    suite: Name
    metric: Metric
    op: Annotated[str, StringConstraints(pattern=r"^(>=|<=)$")]
    value: Annotated[float, Field(allow_inf_nan=False)]

    @field_validator("value")
    @classmethod
    def _in_range(cls, value: float, info: ValidationInfo) -> float:
        metric = info.data.get("metric")  # absent when the metric itself was refused
        if metric in RATES and not 0 <= value <= 1:
            raise ValueError(f"{metric.value} is a fraction: between 0 and 1")
        if metric is Metric.LATENCY_P95_MS and value <= 0:
            raise ValueError("latency_p95_ms is in milliseconds: greater than 0")
        return value


class Evidence(_In):
    case_ids: Annotated[list[str], Field(max_length=MAX_EVIDENCE)] = []
    group_ids: Annotated[list[str], Field(max_length=MAX_ITEMS)] = []
    slice_query: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None
    ) = None

    @field_validator("case_ids", "group_ids")
    @classmethod
    def _once_each(cls, ids: list[str]) -> list[str]:
        # A repeated id is the same evidence: stored and shown once, in the order given.
        return list(dict.fromkeys(ids))

    @field_validator("slice_query")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        # A blank query would select every case: it is no evidence.
        return value or None

    @model_validator(mode="after")
    def _has_evidence(self) -> Evidence:
        if not (self.case_ids or self.group_ids or self.slice_query):
            raise ValueError("evidence needs cases, groups or a slice query")
        return self


class Changes(_In):
    hyperparameters: dict[str, Any] = {}
    architecture: Annotated[str, StringConstraints(max_length=10_000)] | None = None


class RetrainingPlanIn(_In):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    model: Name
    base_version: Version | None = None
    evidence: Evidence
    feature_config: dict[str, Any] | None = None
    targets: Annotated[list[Target], Field(min_length=1, max_length=MAX_ITEMS)]
    augmentations: Annotated[
        list[
            Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
        ],
        Field(max_length=MAX_ITEMS),
    ] = []
    changes: Changes | None = None
    evaluation_suites: Annotated[list[Name], Field(max_length=MAX_ITEMS)] = []


class Benchmark(_In):
    suite: Name
    min_pass_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    max_false_alarm_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    max_latency_p95_ms: Annotated[float, Field(gt=0)] | None = None
    min_stability: Annotated[float, Field(ge=0, le=1)] | None = None

    @model_validator(mode="after")
    def _has_criterion(self) -> Benchmark:
        # A benchmark without one is checked by nothing: the plan would always look met.
        if all(
            v is None
            for v in (
                self.min_pass_rate,
                self.max_false_alarm_rate,
                self.max_latency_p95_ms,
                self.min_stability,
            )
        ):
            raise ValueError(
                "a benchmark needs a criterion: min_pass_rate, max_false_alarm_rate, "
                "max_latency_p95_ms or min_stability"
            )
        return self


class EvaluationPlanIn(_In):
    name: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._\-]+$"
        ),
    ]
    model: Name
    description: Annotated[str, StringConstraints(max_length=100_000)] = ""
    benchmarks: Annotated[list[Benchmark], Field(min_length=1, max_length=MAX_ITEMS)]
