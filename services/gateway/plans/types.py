"""GraphQL types of the plans; evidence lists only the cases the reader may see."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from services.gateway.permissions import read_with
from services.plans import impact, schemas, service
from services.plans.models import EvaluationPlan as EvaluationPlanRow
from services.plans.models import RetrainingPlan as PlanRow
from shared.security import Scope

PlanStatus = strawberry.enum(schemas.PlanStatus, name="PlanStatus")
ImpactMetric = strawberry.enum(impact.ImpactMetric, name="ImpactMetric")
ImpactDimension = strawberry.enum(impact.Dimension, name="ImpactDimension")
ImpactPeriod = strawberry.enum(impact.Period, name="ImpactPeriod")


@read_with(Scope.PLANS_READ, Scope.CASES_READ)
@strawberry.type(description="One key (team, model or failure mode) in one period.")
class ImpactPoint:
    key: str
    period: datetime = strawberry.field(description="The period's start (a Monday, or the 1st).")
    count: int
    mean_hours: float
    median_hours: float
    p90_hours: float


@read_with(Scope.PLANS_READ)
@strawberry.type(description="Cases (those you may see), groups and a slice the plan rests on.")
class PlanEvidence:
    case_ids: list[strawberry.ID]
    group_ids: list[strawberry.ID]
    slice_query: str | None


@read_with(Scope.PLANS_READ)
@strawberry.type(
    description="A retraining plan: draft -> approved -> in_progress -> evaluated -> closed; "
    "its outcome is measured by evaluation runs of the candidate version against the targets."
)
class RetrainingPlan:
    id: strawberry.ID
    title: str
    base_version: str | None
    candidate_version: str | None
    status: PlanStatus
    feature_config: JSON | None
    targets: JSON = strawberry.field(description="[{suite, metric, op, value}]")
    augmentations: list[str]
    changes: JSON | None
    evaluation_suites: list[str]
    outcome: JSON | None = strawberry.field(
        description="{candidate_version, met, targets: [{..., measured, run_id, met}]}"
    )
    revision: int
    created_at: datetime
    created_by: str
    approved_at: datetime | None
    approved_by: str | None
    started_at: datetime | None
    evaluated_at: datetime | None
    closed_at: datetime | None

    @strawberry.field
    def model(self: PlanRow) -> str:  # type: ignore[misc]
        return self.model_name

    @strawberry.field
    async def evidence(self: PlanRow, info: Info) -> PlanEvidence:  # type: ignore[misc]
        visible = await service.visible_evidence(
            await info.context.session(), self, info.context.principal
        )
        return PlanEvidence(
            case_ids=visible,  # type: ignore[arg-type]
            group_ids=await service.visible_evidence_groups(  # type: ignore[arg-type]
                await info.context.session(), self, info.context.principal
            ),
            slice_query=self.evidence.get("slice_query"),
        )


@read_with(Scope.PLANS_READ)
@strawberry.type(description="An evaluation plan at one of its versions (a living document).")
class EvaluationPlan:
    id: strawberry.ID
    name: str
    version: int
    description: str
    benchmarks: JSON = strawberry.field(
        description="[{suite, min_pass_rate, max_false_alarm_rate, max_latency_p95_ms, "
        "min_stability}]"
    )
    created_at: datetime
    created_by: str

    @strawberry.field
    def model(self: EvaluationPlanRow) -> str:  # type: ignore[misc]
        return self.model_name

    @strawberry.field(description="Each success criterion against this model version's runs.")
    async def check(self: EvaluationPlanRow, info: Info, model_version: str) -> JSON:  # type: ignore[misc]
        return await service.check_evaluation_plan(
            await info.context.session(), self, model_version
        )
