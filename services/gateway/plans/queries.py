"""Plans queries (plans:read)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import strawberry
from strawberry.types import Info

from services.gateway.permissions import scoped
from services.gateway.plans.types import (
    EvaluationPlan,
    ImpactDimension,
    ImpactMetric,
    ImpactPeriod,
    ImpactPoint,
    PlanStatus,
    RetrainingPlan,
)
from services.plans import impact, service
from shared.errors import BadUserInput, FieldError
from shared.security import Scope

READ = scoped(Scope.PLANS_READ)


@strawberry.type
class PlansQuery:
    @strawberry.field(permission_classes=READ)
    async def retraining_plan(self, info: Info, id: strawberry.ID) -> RetrainingPlan:
        return await service.get_retraining_plan(await info.context.session(), str(id))  # type: ignore[return-value]

    @strawberry.field(permission_classes=READ, description="Newest first.")
    async def retraining_plans(
        self, info: Info, model: str, status: PlanStatus | None = None
    ) -> list[RetrainingPlan]:
        return await service.retraining_plans(  # type: ignore[return-value]
            await info.context.session(), model, status.value if status else None
        )

    @strawberry.field(
        permission_classes=scoped(Scope.PLANS_READ, Scope.CASES_READ),
        description="Remediation time (a group's first seen -> resolved, over the groups you "
        "may see) or retraining cycle time (a plan's approval -> evaluation), per team, model "
        "or failure mode and per week or month; the last 90 days by default.",
    )
    async def impact_metrics(
        self,
        info: Info,
        metric: ImpactMetric,
        by: ImpactDimension,
        period: ImpactPeriod = ImpactPeriod.MONTH,  # type: ignore[assignment]
        since: datetime | None = None,
        until: datetime | None = None,
        model: str | None = None,
    ) -> list[ImpactPoint]:
        until = until or datetime.now(UTC)
        try:
            return await impact.impact_metrics(  # type: ignore[return-value]
                await info.context.session(),
                info.context.principal,
                impact.ImpactMetric(metric.value),
                impact.Dimension(by.value),
                impact.Period(period.value),
                since or until - timedelta(days=90),
                until,
                model,
            )
        except OverflowError:  # a window reaching past year 1 or 9999 (found by schemathesis)
            raise BadUserInput(
                "since/until out of range",
                [FieldError("until", "dates between the years 1 and 9999, 90 days from either")],
            ) from None

    @strawberry.field(permission_classes=READ, description="Its latest version by default.")
    async def evaluation_plan(
        self, info: Info, name: str, version: int | None = None
    ) -> EvaluationPlan:
        return await service.get_evaluation_plan(await info.context.session(), name, version)  # type: ignore[return-value]
