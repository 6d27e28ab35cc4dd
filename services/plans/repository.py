"""Every query of the plans service, and nothing else."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.plans.models import EvaluationPlan, RetrainingPlan


class PlansRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: object) -> None:
        self.session.add(row)
        await self.session.flush()

    async def retraining_plan(self, plan_id: str) -> RetrainingPlan | None:
        return await self.session.get(RetrainingPlan, plan_id)

    async def retraining_plans(self, model: str, status: str | None) -> list[RetrainingPlan]:
        stmt = select(RetrainingPlan).where(RetrainingPlan.model_name == model)
        if status:
            stmt = stmt.where(RetrainingPlan.status == status)
        rows = await self.session.execute(stmt.order_by(RetrainingPlan.created_at.desc()))
        return list(rows.scalars())

    async def update_plan_if_revision(self, plan_id: str, revision: int, values: dict) -> bool:
        """Optimistic: only the revision the caller read changes (a concurrent change wins)."""
        result = await self.session.execute(
            update(RetrainingPlan)
            .where(RetrainingPlan.id == plan_id, RetrainingPlan.revision == revision)
            .values(**values, revision=revision + 1)
        )
        return result.rowcount == 1

    async def evaluation_plan(self, name: str, version: int | None) -> EvaluationPlan | None:
        stmt = select(EvaluationPlan).where(EvaluationPlan.name == name)
        if version is None:
            stmt = stmt.order_by(EvaluationPlan.version.desc()).limit(1)
        else:
            stmt = stmt.where(EvaluationPlan.version == version)
        return (await self.session.execute(stmt)).scalars().first()

    async def latest_evaluation_plan_version(self, name: str) -> int:
        stmt = select(func.max(EvaluationPlan.version)).where(EvaluationPlan.name == name)
        return (await self.session.execute(stmt)).scalar_one() or 0

    async def evaluated_plans(
        self, since: datetime, until: datetime, model: str | None
    ) -> list[RetrainingPlan]:
        """Plans approved and evaluated, evaluated in [since, until)."""
        p = RetrainingPlan
        stmt = select(p).where(
            p.approved_at.is_not(None),
            p.evaluated_at.is_not(None),
            p.evaluated_at >= since,
            p.evaluated_at < until,
        )
        if model:
            stmt = stmt.where(p.model_name == model)
        return list((await self.session.execute(stmt)).scalars())
