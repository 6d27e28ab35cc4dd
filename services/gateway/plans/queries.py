"""Plans queries (plans:read)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from services.gateway.permissions import scoped
from services.gateway.plans.types import EvaluationPlan, PlanStatus, RetrainingPlan
from services.plans import service
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

    @strawberry.field(permission_classes=READ, description="Its latest version by default.")
    async def evaluation_plan(
        self, info: Info, name: str, version: int | None = None
    ) -> EvaluationPlan:
        return await service.get_evaluation_plan(await info.context.session(), name, version)  # type: ignore[return-value]
