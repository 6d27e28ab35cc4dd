"""Plans mutations (plans:write; approving a retraining plan also needs reviews:write)."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from services.gateway.permissions import scoped
from services.gateway.plans.types import EvaluationPlan, PlanStatus, RetrainingPlan
from services.plans import service
from services.plans.schemas import EvaluationPlanIn, RetrainingPlanIn
from services.plans.schemas import PlanStatus as Status
from shared.security import Scope

WRITE = scoped(Scope.PLANS_WRITE, Scope.PLANS_READ)


@strawberry.type
class PlansMutation:
    @strawberry.mutation(
        permission_classes=WRITE,
        description="plan: {title, model, base_version, evidence: {case_ids, group_ids, "
        "slice_query}, feature_config, targets: [{suite, metric: pass_rate | false_alarm_rate "
        "| latency_p95_ms | stability, op: >= | <=, value}], augmentations, changes: "
        "{hyperparameters, architecture}, evaluation_suites}",
    )
    async def create_retraining_plan(self, info: Info, plan: JSON) -> RetrainingPlan:
        data = RetrainingPlanIn.model_validate(plan)
        return await service.create_retraining_plan(  # type: ignore[return-value]
            await info.context.session(), data, info.context.principal, info.context.search
        )

    @strawberry.mutation(permission_classes=WRITE)
    async def set_retraining_plan_status(
        self, info: Info, id: strawberry.ID, status: PlanStatus, expected_revision: int
    ) -> RetrainingPlan:
        return await service.set_status(  # type: ignore[return-value]
            await info.context.session(),
            str(id),
            Status(status.value),
            expected_revision,
            info.context.principal,
        )

    @strawberry.mutation(
        permission_classes=WRITE,
        description="Measure the candidate version's newest runs against the targets; the "
        "plan becomes evaluated with the outcome.",
    )
    async def evaluate_retraining_plan(
        self, info: Info, id: strawberry.ID, candidate_version: str
    ) -> RetrainingPlan:
        return await service.evaluate_plan(  # type: ignore[return-value]
            await info.context.session(), str(id), candidate_version, info.context.principal
        )

    @strawberry.mutation(
        permission_classes=WRITE,
        description="plan: {name, model, description, benchmarks: [{suite, min_pass_rate, "
        "max_false_alarm_rate, max_latency_p95_ms, min_stability}]}; version 1.",
    )
    async def create_evaluation_plan(self, info: Info, plan: JSON) -> EvaluationPlan:
        data = EvaluationPlanIn.model_validate(plan)
        return await service.save_evaluation_plan(  # type: ignore[return-value]
            await info.context.session(), data, info.context.principal, revise=False
        )

    @strawberry.mutation(permission_classes=WRITE, description="The plan's next version.")
    async def revise_evaluation_plan(self, info: Info, plan: JSON) -> EvaluationPlan:
        data = EvaluationPlanIn.model_validate(plan)
        return await service.save_evaluation_plan(  # type: ignore[return-value]
            await info.context.session(), data, info.context.principal, revise=True
        )
