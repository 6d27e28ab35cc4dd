"""Queries of the failure-mode taxonomy (its versions and codes) and the severity rubric."""

from __future__ import annotations

from sqlalchemy import func, select

from services.catalog.models import FailureMode, SeverityGrade, TaxonomyVersion
from services.catalog.repository.base import RepositoryBase


class TaxonomyQueries(RepositoryBase):
    async def current_taxonomy_version(self) -> int:
        return (await self.session.execute(select(func.max(TaxonomyVersion.version)))).scalar_one()

    async def failure_modes(self, version: int) -> dict[str, str | None]:
        rows = await self.session.execute(
            select(FailureMode.code, FailureMode.parent).where(
                FailureMode.taxonomy_version == version
            )
        )
        return dict(rows.all())

    async def taxonomy(self, version: int) -> list[FailureMode]:
        rows = await self.session.execute(
            select(FailureMode)
            .where(FailureMode.taxonomy_version == version)
            .order_by(FailureMode.code)
        )
        return list(rows.scalars())

    async def taxonomy_versions(self) -> list[TaxonomyVersion]:
        rows = await self.session.execute(select(TaxonomyVersion).order_by(TaxonomyVersion.version))
        return list(rows.scalars())

    async def publish_taxonomy(self, version: TaxonomyVersion, modes: list[FailureMode]) -> None:
        self.session.add(version)
        await self.session.flush()
        self.session.add_all(modes)
        await self.session.flush()

    async def rubric(self) -> list[SeverityGrade]:
        latest = select(func.max(SeverityGrade.rubric_version)).scalar_subquery()
        rows = await self.session.execute(
            select(SeverityGrade)
            .where(SeverityGrade.rubric_version == latest)
            .order_by(SeverityGrade.rank)
        )
        return list(rows.scalars())
